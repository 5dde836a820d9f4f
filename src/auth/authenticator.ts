import type { ApiKeyService } from '../domain/tenancy/api-key.service.ts';
import type { OrgService } from '../domain/tenancy/org.service.ts';
import type { RequestContext } from '../domain/tenancy/tenancy.types.ts';
import { AppError, isAppError } from '../errors.ts';
import { boundedId } from '../ops/identifiers.ts';
import { authErrors, type AuthChallenge } from './auth-error.ts';
import type { DpopVerifier } from './dpop.ts';
import type { JwtVerifier } from './jwt-verifier.ts';
import { effectiveScopes } from './policy.ts';

/** What a request presents, transport-neutral (REST and MCP over HTTP share it). */
export interface PresentedCredentials {
  readonly authorization: string | undefined;
  readonly dpop: string | readonly string[] | undefined;
  readonly method: string;
  /** The absolute URL the client addressed (for DPoP `htu`). */
  readonly url: string;
  readonly requestId: string;
}

/** Filled in as far as authentication got, so a failure can still be audited under the right org. */
export interface AuthAttempt {
  orgId?: string;
  actorId?: string;
  method?: RequestContext['authMethod'];
}

/**
 * Resolves presented credentials to exactly one `RequestContext`, or throws.
 * Engram API keys (`egm_…`) and OAuth access tokens (JWT, optionally bound
 * with DPoP) share the Authorization header; the org always comes from the
 * verified credential, then residency is enforced.
 */
export class Authenticator {
  constructor(
    private readonly deps: {
      apiKeys: ApiKeyService;
      orgs: OrgService;
      jwt: JwtVerifier | undefined;
      dpop: DpopVerifier;
      requireDpop: boolean;
    },
  ) {}

  get acceptsJwt(): boolean {
    return this.deps.jwt !== undefined;
  }

  async authenticate(c: PresentedCredentials, attempt: AuthAttempt = {}): Promise<RequestContext> {
    if (c.authorization === undefined || c.authorization.trim() === '') throw authErrors.missing();
    const m = /^(Bearer|DPoP)\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(c.authorization);
    if (m === null) {
      throw authErrors.invalidRequest('the Authorization header must be "Bearer <credential>" or "DPoP <token>"');
    }
    const scheme = m[1]?.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
    const token = m[2] ?? '';

    if (token.startsWith('egm_')) {
      if (scheme === 'DPoP') throw authErrors.invalidRequest('API keys are sent as Bearer, not DPoP', 'DPoP');
      attempt.method = 'api_key';
      let ctx: RequestContext;
      try {
        ctx = await this.deps.apiKeys.authenticate(token, c.requestId);
      } catch (e) {
        const known = isAppError(e) ? (e.cause as { orgId?: string; actorId?: string } | undefined) : undefined;
        if (known?.orgId !== undefined) attempt.orgId = known.orgId;
        if (known?.actorId !== undefined) attempt.actorId = known.actorId;
        if (isAppError(e) && e.code === 'UNAUTHENTICATED') throw authErrors.invalidToken(e.message, 'Bearer', e);
        throw e;
      }
      attempt.orgId = ctx.orgId;
      attempt.actorId = ctx.actor.id;
      const org = await this.deps.orgs.resolve(ctx.orgId);
      if (org === undefined) throw authErrors.invalidToken('the API key’s org no longer exists');
      this.deps.orgs.assertServed(org);
      return ctx;
    }

    const jwt = this.deps.jwt;
    if (jwt === undefined) {
      throw authErrors.invalidToken(
        'this server accepts only Engram API keys (egm_…); OAuth tokens need AUTH_JWKS_URL or AUTH_JWKS',
        scheme,
      );
    }
    const verified = await jwt.verify(token, scheme);
    attempt.actorId = verified.subject;
    attempt.method = 'jwt';
    let method: RequestContext['authMethod'] = 'jwt';
    if (verified.jkt !== undefined) {
      // RFC 9449 §7.1: a DPoP-bound token is presented with the DPoP scheme and a proof.
      if (scheme !== 'DPoP') throw authErrors.invalidToken('a DPoP-bound token must be sent as "DPoP <token>"', 'DPoP');
      const proof = typeof c.dpop === 'string' ? c.dpop : undefined;
      if (proof === undefined) {
        throw authErrors.invalidDpopProof(
          c.dpop === undefined ? 'the DPoP header is missing' : 'send exactly one DPoP header',
        );
      }
      await this.deps.dpop.verify({
        proof,
        method: c.method,
        url: c.url,
        accessToken: token,
        expectedJkt: verified.jkt,
        partition: verified.orgRef,
      });
      method = 'jwt_dpop';
      attempt.method = method;
    } else if (scheme === 'DPoP') {
      throw authErrors.invalidToken('the token is not DPoP-bound (no cnf.jkt); send it as Bearer', 'DPoP');
    } else if (this.deps.requireDpop) {
      throw authErrors.invalidToken('this server requires DPoP-bound tokens', 'DPoP');
    }
    const org = await this.deps.orgs.resolve(verified.orgRef);
    if (org === undefined)
      // The claim's value lands in the audit entry's reason: bounded like any client-supplied id.
      throw authErrors.invalidToken(`the token’s org ${boundedId(verified.orgRef)} is not known here`, scheme);
    attempt.orgId = org.id;
    this.deps.orgs.assertServed(org);
    return {
      orgId: org.id,
      actor: { type: verified.roles.includes('service') ? 'service' : 'user', id: verified.subject },
      roles: verified.roles,
      scopes: effectiveScopes(verified.scopes, verified.roles),
      authMethod: method,
      requestId: c.requestId,
    };
  }

  /**
   * `WWW-Authenticate` values for a 401/403: the failing scheme's challenge
   * with its error, plus a bare challenge for the other accepted scheme.
   */
  challenges(failed: AuthChallenge | undefined, resourceMetadata?: string): string[] {
    // Header values are visible ASCII only (RFC 9110 §5.5); quotes and backslashes would break the quoting.
    const quote = (s: string) => `"${s.replace(/…/g, '...').replace(/[^\x20-\x7e]|["\\]/g, '')}"`;
    const render = (c: AuthChallenge) => {
      const params = [`realm="engram"`];
      // RFC 9728 §5.1: where a client discovers how to get a token for this resource (MCP authorization).
      if (resourceMetadata !== undefined) params.push(`resource_metadata=${quote(resourceMetadata)}`);
      if (c.scheme === 'DPoP') params.push(`algs=${quote(this.deps.dpop.algorithms.join(' '))}`);
      if (c.error !== undefined) params.push(`error=${quote(c.error)}`);
      if (c.description !== undefined) params.push(`error_description=${quote(c.description)}`);
      if (c.scope !== undefined) params.push(`scope=${quote(c.scope)}`);
      return `${c.scheme} ${params.join(', ')}`;
    };
    const main = failed ?? { scheme: 'Bearer' as const };
    const out = [render(main)];
    if (this.acceptsJwt) {
      const other = main.scheme === 'Bearer' ? 'DPoP' : 'Bearer';
      out.push(render({ scheme: other }));
    }
    return out;
  }

  /** DPoP proof algorithms this server accepts. */
  get dpopAlgorithms(): readonly string[] {
    return this.deps.dpop.algorithms;
  }

  get requiresDpop(): boolean {
    return this.deps.requireDpop;
  }

  /** The nonce to send in `DPoP-Nonce`, when nonces are on. */
  dpopNonce(): string | undefined {
    return this.deps.dpop.currentNonce();
  }
}

export const isResidencyViolation = (e: unknown): e is AppError => isAppError(e) && e.code === 'RESIDENCY_VIOLATION';
