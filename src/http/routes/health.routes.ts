import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Health } from '../../ops/health.ts';

const check = z.object({ ok: z.boolean(), latencyMs: z.number(), error: z.string().optional() });
const readiness = z.object({ status: z.enum(['ready', 'not_ready']), checks: z.record(z.string(), check) });

export const healthRoutes =
  (deps: { health: Health }): FastifyPluginAsyncZod =>
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
  };
