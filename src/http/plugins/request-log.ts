import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { traceIdOf } from './tracing.ts';

/** The fields logged for a request; everything else about it stays out of the log. */
function fields(req: FastifyRequest, reply: FastifyReply | undefined) {
  const traceId = traceIdOf(req);
  return {
    method: req.method,
    // The template, never the URL: paths and query strings may carry search text.
    route: req.routeOptions.url ?? 'unmatched',
    ...(reply === undefined
      ? {}
      : { statusCode: reply.statusCode, latencyMs: Math.round(reply.elapsedTime * 10) / 10 }),
    ...(req.ctx === undefined ? {} : { org: req.ctx.orgId }),
    ...(traceId === undefined ? {} : { trace_id: traceId }),
  };
}

/**
 * One `request completed` line per request (Fastify's own two lines, with
 * the raw URL, are turned off by `disableRequestLogging`): request id (the
 * logger's `reqId`), method, route template, status, latency, org once
 * authenticated and trace id. Headers, bodies and URLs are never logged.
 */
export function installRequestLog(app: FastifyInstance): void {
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(fields(req, reply), 'request completed');
  });
  app.addHook('onRequestAbort', async (req) => {
    req.log.info(fields(req, undefined), 'request aborted by the client');
  });
}
