import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Metrics } from '../../ops/metrics.ts';

/**
 * The Prometheus scrape endpoint. It needs `ops:read` unless METRICS_PUBLIC is
 * set (for scrapers on a private network that cannot present a key).
 */
export const metricsRoutes =
  (deps: { metrics: Metrics; public: boolean }): FastifyPluginAsyncZod =>
  async (app) => {
    app.get(
      '/metrics',
      {
        config: deps.public ? { public: true } : { scope: 'ops:read' },
        schema: { tags: ['ops'], summary: 'Prometheus metrics (text exposition format)' },
      },
      async (_req, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
    );
  };
