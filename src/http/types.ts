import type { FastifyRequest } from 'fastify';
import type { RequestContext, Scope } from '../domain/tenancy/tenancy.types.ts';
import { errors } from '../errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a caller needs. Every non-public route must declare one. */
    scope?: Scope;
    /** Reachable without credentials (health, docs). */
    public?: boolean;
  }
  interface FastifyRequest {
    ctx: RequestContext | undefined;
  }
}

/** The caller's context; set by the auth hook on every non-public route. */
export function contextOf(req: FastifyRequest): RequestContext {
  if (req.ctx === undefined) throw errors.unauthenticated();
  return req.ctx;
}
