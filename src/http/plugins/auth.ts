import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isAuthError } from '../../auth/auth-error.ts';
import { authErrors } from '../../auth/auth-error.ts';
import type { AuthAttempt, Authenticator } from '../../auth/authenticator.ts';
import type { AuthFailureLimiter } from '../../auth/failure-limiter.ts';
import { can } from '../../auth/policy.ts';
import type { AuditService } from '../../domain/audit/audit.service.ts';
import type { AuditOutcome } from '../../domain/audit/audit.types.ts';
import { isAppError } from '../../errors.ts';
import { boundedId } from '../../ops/identifiers.ts';

/** Per-request facts the audit hook needs, gathered as the request goes. */
export interface AuditInfo {
  attempt: AuthAttempt;
  resourceId?: string;
  errorCode?: string;
  reason?: string;
  /** What the route adds to its entry, e.g. a batch's counts (never content). */
  details?: Record<string, unknown>;
  /** Refused by the failed-authentication limit before its credentials were looked at. */
  authLimited?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    auditInfo: AuditInfo | null;
  }
}

export interface AuthPluginDeps {
  readonly authenticator: Authenticator;
  readonly audit: AuditService;
  /** Failed authentication per client address (AUTH_FAILURES_PER_MIN); omitted: unlimited. */
  readonly failures?: AuthFailureLimiter | undefined;
  /** External base URL (PUBLIC_URL) for DPoP `htu`; else derived from the request. */
  readonly publicUrl: string | undefined;
  /** Audit successful reads too. */
  readonly auditReads: boolean;
  readonly isPublic: (req: FastifyRequest) => boolean;
  readonly sendError: (
    reply: FastifyReply,
    req: FastifyRequest,
    code: import('../../errors.ts').ErrorCode,
    message: string,
    details?: unknown,
  ) => FastifyReply;
}

const outcomeOf = (status: number): AuditOutcome =>
  status < 400 ? 'success' : status === 403 ? 'denied' : status >= 500 ? 'error' : 'failure';

const retryAfterOf = (details: unknown): number | undefined => {
  const v = (details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  return typeof v === 'number' ? v : undefined;
};

/** The origin clients use for this server: PUBLIC_URL, else what the request addressed. */
export const baseUrl = (req: FastifyRequest, publicUrl: string | undefined): string =>
  publicUrl ?? `${req.protocol}://${req.host}`;

/** The URL the client addressed, for DPoP `htu`. */
export const requestUrl = (req: FastifyRequest, publicUrl: string | undefined): string =>
  `${baseUrl(req, publicUrl)}${req.url}`;

/** MCP endpoints: Streamable HTTP and the legacy SSE pair. */
export const isMcpPath = (url: string): boolean => /^\/(mcp|sse|messages)(\/|\?|$)/.test(url);

/**
 * Authentication, authorisation and audit for every route. `onRequest`
 * resolves the credentials to one `RequestContext` (or answers 401/403 with
 * the RFC 6750 / RFC 9449 `WWW-Authenticate` challenge) and checks the route's
 * scope; `onSend` appends the audit entry before the response leaves, so an
 * acknowledged write is always audited.
 */
export function installAuth(app: FastifyInstance, deps: AuthPluginDeps): void {
  app.decorateRequest('auditInfo', null);
  const nonceOn = deps.authenticator.dpopNonce() !== undefined;

  app.addHook('onRequest', async (req, reply) => {
    req.auditInfo = { attempt: {} };
    if (nonceOn) void reply.header('dpop-nonce', deps.authenticator.dpopNonce());
    if (deps.isPublic(req)) return;
    const scope = req.routeOptions.config.scope;
    // Before any lookup: an address that used up its failures costs a map read, not a query.
    const wait = deps.failures?.retryAfter(req.ip) ?? 0;
    if (wait > 0) {
      void reply.header('retry-after', String(wait));
      req.auditInfo.authLimited = true;
      return deps.sendError(
        reply,
        req,
        'RATE_LIMITED',
        `Too many failed authentication attempts from this address; retry in ${wait} s`,
        { class: 'auth_failure', retryAfterSeconds: wait },
      );
    }
    try {
      req.ctx = await deps.authenticator.authenticate(
        {
          authorization: req.headers.authorization,
          dpop: req.headers.dpop,
          method: req.method,
          url: requestUrl(req, deps.publicUrl),
          requestId: req.id,
        },
        req.auditInfo.attempt,
      );
      if (scope !== undefined && !can(req.ctx, scope)) {
        throw authErrors.insufficientScope(scope, req.ctx.authMethod === 'jwt_dpop' ? 'DPoP' : 'Bearer');
      }
    } catch (e) {
      if (isAuthError(e)) {
        const metadata = `${baseUrl(req, deps.publicUrl)}/.well-known/oauth-protected-resource${isMcpPath(req.url) ? '/mcp' : ''}`;
        void reply.header('www-authenticate', deps.authenticator.challenges(e.challenge, metadata).join(', '));
        req.auditInfo.reason = e.message;
        // A credential that was presented and failed counts against its address; a missing one cost no lookup.
        if (deps.failures !== undefined && e.code === 'UNAUTHENTICATED' && e.challenge.error !== undefined) {
          await deps.failures.fail(req.ip);
        }
        return deps.sendError(reply, req, e.code, e.message, e.details);
      }
      if (isAppError(e) && e.code === 'RESIDENCY_VIOLATION') req.auditInfo.reason = e.message;
      const retryAfter = isAppError(e) && e.code === 'RATE_LIMITED' ? retryAfterOf(e.details) : undefined;
      if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
      throw e;
    }
  });

  app.addHook('onSend', async (req, reply, payload) => {
    const info = req.auditInfo;
    if (info === null || req.routeOptions.url === undefined) return payload;
    const status = reply.statusCode;
    const config = req.routeOptions.config;
    const isRead = req.method === 'GET' || req.method === 'HEAD' || config.audit === 'read';
    const audited =
      status === 401 ||
      status === 403 ||
      (!deps.isPublic(req) && (!isRead || status >= 500 || config.audit === 'always' || deps.auditReads));
    // Refused authentication (a 401, or a 429 of the failure limit) is summed per source and window.
    const refusal = status === 401 || info.authLimited === true;
    // Other 429s changed nothing, and auditing each one would turn a flood into audit writes: metrics count them.
    if (!refusal && (!audited || info.errorCode === 'RATE_LIMITED')) return payload;
    const ctx = req.ctx;
    const action = config.action ?? `${req.method} ${req.routeOptions.url}`;
    const params = req.params as Record<string, unknown> | undefined;
    // A path parameter is the client's text until the route validated it: bounded before it is stored.
    const resourceId = info.resourceId ?? (typeof params?.id === 'string' ? boundedId(params.id, 128) : null);
    // An org refused for residency keeps its data elsewhere: its refusal goes to the system chain.
    const foreign = info.errorCode === 'RESIDENCY_VIOLATION';
    const orgId = ctx?.orgId ?? info.attempt.orgId ?? null;
    const event = {
      orgId: foreign ? null : orgId,
      actorType: ctx?.actor.type ?? (info.attempt.actorId !== undefined ? 'unverified' : 'anonymous'),
      actorId: ctx?.actor.id ?? info.attempt.actorId ?? null,
      authMethod: ctx?.authMethod ?? info.attempt.method ?? null,
      action,
      resourceType: action.includes('.') ? (action.split('.')[0] ?? null) : null,
      resourceId,
      outcome: outcomeOf(status),
      status,
      ip: req.ip,
      userAgent: req.headers['user-agent']?.slice(0, 256) ?? null,
      requestId: req.id,
      details: {
        ...info.details,
        ...(foreign && orgId !== null ? { orgId } : {}),
        ...(info.errorCode === undefined ? {} : { errorCode: info.errorCode }),
        ...(info.reason === undefined ? {} : { reason: info.reason }),
      },
    };
    if (refusal) {
      deps.audit.noteRefusal(event);
      return payload;
    }
    try {
      await deps.audit.record(event);
    } catch (err) {
      // The action already happened; losing its audit entry is logged loudly, not hidden.
      req.log.error({ err, requestId: req.id, action }, 'audit entry could not be written');
    }
    return payload;
  });
}
