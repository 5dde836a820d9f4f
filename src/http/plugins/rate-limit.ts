import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { QuotaService } from '../../domain/tenancy/quota.service.ts';
import type { RateClass } from '../../domain/tenancy/quota.types.ts';
import { RateGate, rateLimited } from '../../domain/tenancy/rate-gate.ts';
import type { RateLimiter } from '../../ports/rate-limiter.ts';
import { isMcpPath } from './auth.ts';

export interface RateLimitPluginDeps {
  readonly limiter: RateLimiter;
  readonly quotas: QuotaService;
  /** False: the hook is not installed at all. */
  readonly enabled: boolean;
  /** Called on every 429, e.g. to count rejections in metrics. */
  readonly onReject?: (cls: RateClass) => void;
  /** Where the fail-open warning goes; default: the request's logger. */
  readonly log?: FastifyBaseLogger;
}

/** At most one "limiter unavailable" warning per this many ms. */
const WARN_EVERY_MS = 30_000;
const ADMIN_SCOPE_RE = /^(admin|audit|ops):/;

/**
 * The route's rate class: its `rateClass` config, else admin for admin, audit
 * and ops scopes, search for search and MCP endpoints, write for anything but
 * GET/HEAD, read otherwise.
 */
export function rateClassOf(req: FastifyRequest): RateClass {
  const config = req.routeOptions.config;
  if (config.rateClass !== undefined) return config.rateClass;
  if (config.scope !== undefined && ADMIN_SCOPE_RE.test(config.scope)) return 'admin';
  const url = req.routeOptions.url ?? req.url;
  if (url.endsWith('/search') || isMcpPath(url)) return 'search';
  return req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write';
}

/**
 * Token-bucket rate limiting per org and route class (key `${orgId}:${class}`),
 * in an `onRequest` hook installed after authentication's, so `req.ctx` is set
 * and a refused request costs no body parsing; public and unauthenticated
 * requests are not limited. A route with a `rateCost` (the bulk write: one
 * token per item) is charged in `preHandler` instead, once its body is
 * validated; a cost above the bucket's capacity could never be paid and is
 * refused with 413 PAYLOAD_TOO_LARGE naming the most items a request may hold. Every limited response
 * carries `RateLimit-Limit`/`-Remaining`/`-Reset` (draft-ietf-httpapi-ratelimit-headers:
 * Limit is the bucket's capacity, Reset the seconds until it is full again),
 * `RateLimit-Policy` and the same values as `X-RateLimit-*`. An empty bucket
 * answers 429 RATE_LIMITED with `Retry-After`.
 *
 * Fails open: when the limiter (Valkey) or the quota lookup fails, the request
 * goes through with `X-RateLimit-Degraded: true`, and a warning is logged at
 * most every 30 s. Availability of the API outranks exact limits.
 */
export function installRateLimit(app: FastifyInstance, deps: RateLimitPluginDeps): void {
  if (!deps.enabled) return;
  let lastWarnAt = Number.NEGATIVE_INFINITY;

  const degrade = (req: FastifyRequest, reply: FastifyReply, cls: RateClass, err: unknown): void => {
    void reply.header('x-ratelimit-degraded', 'true');
    const now = Date.now();
    if (now - lastWarnAt < WARN_EVERY_MS) return;
    lastWarnAt = now;
    (deps.log ?? req.log).warn(
      { err, rateClass: cls, limiter: deps.limiter.kind },
      'rate limiter unavailable; allowing requests unlimited (fail open)',
    );
  };

  const gate = new RateGate({ limiter: deps.limiter, quotas: deps.quotas, onReject: deps.onReject });

  const limited = (req: FastifyRequest): req is FastifyRequest & { ctx: NonNullable<FastifyRequest['ctx']> } =>
    req.ctx !== undefined && req.routeOptions.url !== undefined && req.routeOptions.config.public !== true;

  const charge = async (
    req: FastifyRequest & { ctx: NonNullable<FastifyRequest['ctx']> },
    reply: FastifyReply,
    cost: number,
  ) => {
    const cls = rateClassOf(req);
    const charged = await gate.take(req.ctx.orgId, cls, cost);
    if ('unavailable' in charged) {
      degrade(req, reply, cls, charged.unavailable);
      return;
    }
    const { quota, decision } = charged;
    const { capacity, refillPerSecond } = quota.bucket;
    const limit = String(capacity);
    const remaining = String(decision.remaining);
    const reset = String(decision.resetSeconds);
    void reply.headers({
      'ratelimit-limit': limit,
      'ratelimit-remaining': remaining,
      'ratelimit-reset': reset,
      // capacity requests per the seconds a full refill takes: the sustained rate.
      'ratelimit-policy': `${limit};w=${Math.max(1, Math.round(capacity / refillPerSecond))}`,
      'x-ratelimit-limit': limit,
      'x-ratelimit-remaining': remaining,
      'x-ratelimit-reset': reset,
    });
    if (decision.allowed) return;
    void reply.header('retry-after', String(decision.retryAfterSeconds));
    // Thrown, not sent, so the app's error handler gives it the standard error shape.
    throw rateLimited(cls, charged, cost, req.routeOptions.config.rateCost === undefined ? 'requests' : 'items');
  };

  app.addHook('onRequest', async (req, reply) => {
    if (!limited(req) || req.routeOptions.config.rateCost !== undefined) return;
    await charge(req, reply, 1);
  });

  // Routes that cost more than one token are charged once their body is known (and valid).
  app.addHook('preHandler', async (req, reply) => {
    const costOf = req.routeOptions.config.rateCost;
    if (costOf === undefined || !limited(req)) return;
    await charge(req, reply, Math.max(1, Math.ceil(costOf(req))));
  });
}
