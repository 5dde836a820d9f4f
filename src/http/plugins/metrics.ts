import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../ops/metrics.ts';

/**
 * HTTP RED metrics: one counter and one histogram per route template
 * (`/v1/memories/:id`, never the raw URL, so ids cannot explode the series
 * count). Requests no route matched are labelled `unmatched`.
 */
export function installHttpMetrics(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const method = req.method;
    metrics.httpRequests.inc({ method, route, status_class: `${Math.floor(reply.statusCode / 100)}xx` });
    metrics.httpDuration.observe({ method, route }, reply.elapsedTime / 1000);
  });
}
