import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { DependencyHealth, Health } from '../../ops/health.ts';

const check = z.object({ ok: z.boolean(), latencyMs: z.number(), error: z.string().optional() });
const readiness = z.object({ status: z.enum(['ready', 'not_ready']), checks: z.record(z.string(), check) });
const depStatus = z.enum(['up', 'degraded', 'down']);
const depsSummary = z.object({ status: depStatus, deps: z.record(z.string(), depStatus) });
const depsDetail = z.object({
  status: depStatus,
  checkedAt: z.string(),
  deps: z.record(
    z.string(),
    z.object({
      status: depStatus,
      latencyMs: z.number(),
      error: z.string().optional(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
});

export const healthRoutes =
  (deps: { health: Health; dependencies?: DependencyHealth | undefined }): FastifyPluginAsyncZod =>
  async (app) => {
    app.get(
      '/health/live',
      {
        config: { public: true },
        schema: {
          tags: ['health'],
          summary: 'The process is up',
          response: { 200: z.object({ status: z.literal('live') }) },
        },
      },
      async () => ({ status: 'live' as const }),
    );
    app.get(
      '/health/ready',
      {
        config: { public: true },
        schema: {
          tags: ['health'],
          summary: 'Can serve: migrations applied and the store answers',
          response: { 200: readiness, 503: readiness },
        },
      },
      async (_req, reply) => {
        const r = await deps.health.ready();
        return reply.code(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not_ready', checks: r.checks });
      },
    );
    const dependencies = deps.dependencies;
    if (dependencies === undefined) return;
    app.get(
      '/health/deps',
      {
        config: { public: true },
        schema: {
          tags: ['health'],
          summary: 'Each dependency up, degraded or down (503 when the store is down)',
          response: { 200: depsSummary, 503: depsSummary },
        },
      },
      async (_req, reply) => {
        const r = await dependencies.report();
        const summary = Object.fromEntries(Object.entries(r.deps).map(([name, d]) => [name, d.status]));
        return reply.code(r.status === 'down' ? 503 : 200).send({ status: r.status, deps: summary });
      },
    );
    app.get(
      '/health/deps/detail',
      {
        config: { scope: 'ops:read' },
        schema: {
          tags: ['health'],
          summary: 'Dependencies with probe latency, errors and circuit breaker states',
          response: { 200: depsDetail, 503: depsDetail },
        },
      },
      async (_req, reply) => {
        const r = await dependencies.report();
        return reply
          .code(r.status === 'down' ? 503 : 200)
          .send({ status: r.status, checkedAt: r.checkedAt.toISOString(), deps: r.deps });
      },
    );
  };
