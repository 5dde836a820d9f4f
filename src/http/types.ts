import type { FastifyRequest } from 'fastify';
import type { RequestContext, Scope } from '../domain/tenancy/tenancy.types.ts';
import { errors } from '../errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a caller needs. Every non-public route must declare one. */
    scope?: Scope;
    /** Reachable without credentials (health, docs). */
    public?: boolean;
    /**
     * Any verified principal may call it; finer checks happen inside (MCP: per
     * tool scopes; /v1/me). An explicit declaration, like a scope.
     */
    authenticated?: true;
    /** The audit log's name for what this route does, e.g. `memory.create`. */
    action?: string;
    /**
     * `always`: audit successful calls even though the route only reads (admin and audit reads);
     * `read`: a POST that only reads (search), audited like a GET.
     */
    audit?: 'always' | 'read';
    /** The rate-limit class, when the default (scope, URL and method) guesses wrong. */
    rateClass?: 'read' | 'write' | 'search' | 'admin' | 'import';
    /**
     * Tokens the request costs, from its validated body (e.g. the items of a
     * batch). Such a route is charged in `preHandler`, after validation,
     * instead of one token on arrival.
     */
    rateCost?: (req: FastifyRequest) => number;
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
