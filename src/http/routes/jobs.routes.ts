import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { JobService } from '../../domain/jobs/job.service.ts';
import { JOB_STATES, type Job } from '../../domain/jobs/job.types.ts';
import { errorBodySchema, idParams } from '../schemas.ts';
import { contextOf } from '../types.ts';

const tags = ['jobs'];
const errorsFor = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorBodySchema]));

export const jobSchema = z.object({
  id: z.string(),
  kind: z.string(),
  payload: z.record(z.string(), z.unknown()),
  state: z.enum(JOB_STATES),
  attempts: z.number().int().describe('Runs started so far'),
  maxAttempts: z.number().int(),
  runAt: z.string().describe('When a queued job is due'),
  lockedUntil: z.string().nullable().describe('Lease of a running job'),
  lastError: z.string().nullable().describe('The latest failure (kept after a later success)'),
  createdAt: z.string(),
  updatedAt: z.string(),
  finishedAt: z.string().nullable(),
});

/** The worker holding a job is an internal name (host, pid): not shown. */
export const presentJob = (j: Job): z.infer<typeof jobSchema> => ({
  id: j.id,
  kind: j.kind,
  payload: { ...j.payload },
  state: j.state,
  attempts: j.attempts,
  maxAttempts: j.maxAttempts,
  runAt: j.runAt.toISOString(),
  lockedUntil: j.lockedUntil?.toISOString() ?? null,
  lastError: j.lastError,
  createdAt: j.createdAt.toISOString(),
  updatedAt: j.updatedAt.toISOString(),
  finishedAt: j.finishedAt?.toISOString() ?? null,
});

const kindText = z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'a job kind like embed_memory');

/** The org's background jobs: list (e.g. the dead letter), inspect, re-drive. Admin-class rate limits. */
export const jobRoutes =
  (deps: { jobs: JobService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.get(
      '/v1/jobs',
      {
        config: { scope: 'jobs:read', action: 'job.list', audit: 'always', rateClass: 'admin' },
        schema: {
          tags,
          summary: 'List the org’s background jobs, newest first (state=dead: the dead letter)',
          querystring: z.strictObject({
            state: z.enum(JOB_STATES).optional(),
            kind: kindText.optional(),
            limit: z.coerce.number().int().min(1).max(500).default(50),
            cursor: z.string().max(200).optional(),
          }),
          response: {
            200: z.object({ items: z.array(jobSchema), nextCursor: z.string().nullable() }),
            ...errorsFor(400, 401, 403),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await deps.jobs.list(contextOf(req), { state: q.state, kind: q.kind }, q.limit, q.cursor ?? null);
        return { items: page.items.map(presentJob), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/jobs/:id',
      {
        config: { scope: 'jobs:read', action: 'job.get', audit: 'always', rateClass: 'admin' },
        schema: {
          tags,
          summary: 'One background job of the org',
          params: idParams,
          response: { 200: jobSchema, ...errorsFor(401, 403, 404) },
        },
      },
      async (req) => presentJob(await deps.jobs.get(contextOf(req), req.params.id)),
    );

    app.post(
      '/v1/jobs/:id/retry',
      {
        config: { scope: 'jobs:write', action: 'job.retry', rateClass: 'admin' },
        schema: {
          tags,
          summary: 'Re-drive a dead job: queued again, due now, attempts reset (409 unless it is dead)',
          params: idParams,
          response: { 200: jobSchema, ...errorsFor(401, 403, 404, 409) },
        },
      },
      async (req) => {
        if (req.auditInfo !== null) req.auditInfo.resourceId = req.params.id;
        return presentJob(await deps.jobs.retry(contextOf(req), req.params.id));
      },
    );

    app.post(
      '/v1/jobs/retry',
      {
        config: { scope: 'jobs:write', action: 'job.retry_dead', rateClass: 'admin' },
        schema: {
          tags,
          summary: 'Re-drive every dead job of the org (of one kind, if given)',
          body: z.strictObject({
            state: z.literal('dead').describe('Only dead jobs can be re-driven'),
            kind: kindText.optional(),
          }),
          response: { 200: z.object({ requeued: z.number().int() }), ...errorsFor(400, 401, 403) },
        },
      },
      async (req) => ({ requeued: await deps.jobs.retryDead(contextOf(req), req.body.kind) }),
    );
  };
