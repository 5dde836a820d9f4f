import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { JwtConfig } from '../config/config.ts';
import { isRole, type Role } from '../domain/tenancy/tenancy.types.ts';
import { errors, isAppError } from '../errors.ts';
import { authErrors } from './auth-error.ts';

/** What a verified access token says about its bearer. */
export interface VerifiedToken {
  readonly subject: string;
  /** The org claim's value: an org id or slug. */
  readonly orgRef: string;
  /** Scopes the token carries; undefined when it has no scope claim. */
  readonly scopes: readonly string[] | undefined;
  readonly roles: readonly Role[];
  /** `cnf.jkt`: the thumbprint of the key the token is bound to (DPoP). */
  readonly jkt: string | undefined;
  readonly expiresAt: Date | undefined;
}

/** Reads a claim by exact name first (e.g. `https://example.com/org`), then as a dotted path (`realm_access.roles`). */
export function readClaim(payload: JWTPayload, name: string): unknown {
  if (name in payload) return payload[name];
  let cur: unknown = payload;
  for (const part of name.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

const asStrings = (v: unknown): string[] | undefined =>
  typeof v === 'string'
    ? v.split(/\s+/).filter((s) => s !== '')
    : Array.isArray(v)
      ? v.filter((s): s is string => typeof s === 'string')
      : undefined;

/**
 * OAuth 2.1 resource-server token verification with jose: signature against
 * the JWKS (remote, refetched on an unknown `kid`, so keys rotate without
 * downtime) or inline keys; algorithm allow-list (`none` never, HS256 only
 * with an explicitly configured secret); issuer, audience, exp, nbf with
 * clock skew.
 */
export class JwtVerifier {
  private readonly keys: JWTVerifyGetKey;
  private readonly hsSecret: Uint8Array | undefined;

  constructor(private readonly cfg: JwtConfig) {
    const jwks =
      cfg.jwksUrl !== undefined
        ? createRemoteJWKSet(new URL(cfg.jwksUrl), {
            cooldownDuration: 30_000,
            cacheMaxAge: 600_000,
            timeoutDuration: 5_000,
          })
        : cfg.jwks !== undefined
          ? createLocalJWKSet(JSON.parse(cfg.jwks) as Parameters<typeof createLocalJWKSet>[0])
          : undefined;
    this.hsSecret = cfg.hs256Secret === undefined ? undefined : new TextEncoder().encode(cfg.hs256Secret);
    this.keys = async (header: JWSHeaderParameters, token) => {
      if (header.alg?.startsWith('HS') === true) {
        if (this.hsSecret === undefined) throw new joseErrors.JOSEAlgNotAllowed('HS* tokens are not accepted');
        return this.hsSecret;
      }
      if (jwks === undefined) throw new joseErrors.JWKSNoMatchingKey();
      return jwks(header, token);
    };
  }

  /** Verifies `token`; throws an `AuthError` (invalid_token) or UNAVAILABLE when the JWKS cannot be fetched. */
  async verify(token: string, scheme: 'Bearer' | 'DPoP'): Promise<VerifiedToken> {
    let payload: JWTPayload;
    try {
      const r = await jwtVerify(token, this.keys, {
        issuer: this.cfg.issuer,
        audience: [...this.cfg.audiences],
        algorithms: this.cfg.algorithms.filter(
          (a) => a !== 'none' && (!a.startsWith('HS') || this.hsSecret !== undefined),
        ),
        clockTolerance: this.cfg.clockSkewSeconds,
        // maxTokenAge also requires iat and refuses one in the future (beyond the tolerance).
        maxTokenAge: this.cfg.maxTokenAgeSeconds,
        requiredClaims: ['exp', 'sub', 'iat'],
        // RFC 9068 §2.1; jose compares it with and without the application/ prefix.
        ...(this.cfg.requireAtJwt ? { typ: 'at+jwt' } : {}),
      });
      // A DPoP proof is not an access token (RFC 9449 §4.2 typ).
      if (r.protectedHeader.typ?.toLowerCase() === 'dpop+jwt') {
        throw authErrors.invalidToken('a DPoP proof is not an access token', scheme);
      }
      payload = r.payload;
    } catch (e) {
      throw this.translate(e, scheme);
    }
    const orgRef = readClaim(payload, this.cfg.orgClaim);
    if (typeof orgRef !== 'string' || orgRef === '') {
      throw authErrors.invalidToken(`the token has no ${this.cfg.orgClaim} claim naming an org`, scheme);
    }
    const rawScopes =
      readClaim(payload, this.cfg.scopeClaim) ?? (this.cfg.scopeClaim === 'scope' ? payload.scp : undefined);
    const cnf = payload.cnf as { jkt?: unknown } | undefined;
    return {
      subject: payload.sub ?? '',
      orgRef,
      scopes: asStrings(rawScopes),
      roles: (asStrings(readClaim(payload, this.cfg.rolesClaim)) ?? []).filter(isRole),
      jkt: typeof cnf?.jkt === 'string' ? cnf.jkt : undefined,
      expiresAt: typeof payload.exp === 'number' ? new Date(payload.exp * 1000) : undefined,
    };
  }

  private translate(e: unknown, scheme: 'Bearer' | 'DPoP'): Error {
    if (e instanceof joseErrors.JWTExpired) {
      return authErrors.invalidToken(
        e.claim === 'iat'
          ? `the token is older than this server accepts (${this.cfg.maxTokenAgeSeconds} s after iat)`
          : 'the token has expired',
        scheme,
        e,
      );
    }
    if (e instanceof joseErrors.JWTClaimValidationFailed) {
      const what =
        e.claim === 'typ'
          ? 'the token is not an access token (typ must be at+jwt)'
          : e.claim === 'iat' && e.reason === 'check_failed'
            ? 'the token was issued in the future (iat)'
            : e.claim === 'aud'
              ? 'the token is not meant for this server (aud)'
              : e.claim === 'iss'
                ? 'the token was issued by an untrusted issuer (iss)'
                : e.claim === 'nbf'
                  ? 'the token is not valid yet (nbf)'
                  : `the token's ${e.claim} claim is invalid (${e.reason})`;
      return authErrors.invalidToken(what, scheme, e);
    }
    if (e instanceof joseErrors.JOSEAlgNotAllowed) {
      return authErrors.invalidToken('the token is signed with an algorithm this server does not accept', scheme, e);
    }
    if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys) {
      return authErrors.invalidToken('no trusted key matches the token (kid)', scheme, e);
    }
    if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
      return authErrors.invalidToken('the token signature is not valid', scheme, e);
    }
    if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JWKSInvalid) {
      return errors.unavailable('The identity provider’s signing keys (JWKS)', e);
    }
    if (e instanceof joseErrors.JOSEError)
      return authErrors.invalidToken('the token is malformed or invalid', scheme, e);
    if (isAppError(e)) return e;
    // A failed JWKS fetch (network) is the identity provider's outage, not the client's fault.
    return errors.unavailable('The identity provider’s signing keys (JWKS)', e);
  }
}
