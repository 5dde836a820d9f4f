import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { MemoryService } from '../../domain/memory/memory.service.ts';
import type { MemoryFilter } from '../../domain/memory/memory.types.ts';
import type { SearchService } from '../../domain/search/search.service.ts';
import {
  createMemoriesBatchBody,
  createMemoryBody,
  errorBodySchema,
  idParams,
  listQuery,
  memoriesBatchResponse,
  memorySchema,
  presentBatch,
  presentHit,
  presentMemory,
  presentVersion,
  searchBody,
  searchResponse,
  updateMemoryBody,
  versionSchema,
} from '../schemas.ts';
import { contextOf } from '../types.ts';

const errorsFor = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorBodySchema]));
const tags = ['memories'];

export const memoryRoutes =
  (deps: {
    memories: MemoryService;
    search: SearchService;
    /** Body limit of the batch route (BATCH_BODY_LIMIT_BYTES); default: the app's. */
    batchBodyLimit?: number | undefined;
  }): FastifyPluginAsyncZod =>
  async (app) => {
    app.post(
      '/v1/memories',
      {
        config: { scope: 'memories:write', action: 'memory.create' },
        schema: {
          tags,
          summary: 'Remember: store a memory (exact duplicates in the same scope are returned, not stored twice)',
          body: createMemoryBody,
          response: {
            200: memorySchema.extend({ deduplicated: z.literal(true) }),
            201: memorySchema.extend({ deduplicated: z.literal(false) }),
            ...errorsFor(400, 401, 403, 413),
          },
        },
      },
      async (req, reply) => {
        const r = await deps.memories.remember(contextOf(req), req.body);
        if (req.auditInfo !== null) req.auditInfo.resourceId = r.memory.id;
        return r.created
          ? reply.code(201).send({ ...presentMemory(r.memory), deduplicated: false as const })
          : reply.code(200).send({ ...presentMemory(r.memory), deduplicated: true as const });
      },
    );

    app.post(
      '/v1/memories/batch',
      {
        config: {
          scope: 'memories:write',
          action: 'memory.import',
          rateClass: 'import',
          rateCost: (req) => (req.body as { items: readonly unknown[] }).items.length,
        },
        ...(deps.batchBodyLimit === undefined ? {} : { bodyLimit: deps.batchBodyLimit }),
        schema: {
          tags,
          summary:
            'Remember many: up to 1,000 memories in one transaction, with a result per item (created, existing or error)',
          description:
            'Each item is a POST /v1/memories body. A malformed body or item answers 400 and stores nothing; ' +
            'an item the service refuses (empty or too long content, validTo before validFrom) gets an error ' +
            'in its place and the others are stored. Duplicates, in the store or within the batch, are stored once. ' +
            'Vectors are computed in the background; lexical search finds the memories at once. ' +
            'Rate-limited in the `import` class, one token per item.',
          body: createMemoriesBatchBody,
          response: { 200: memoriesBatchResponse, ...errorsFor(400, 401, 403, 413, 429) },
        },
      },
      async (req) => {
        const r = await deps.memories.rememberMany(contextOf(req), req.body.items);
        // Counts only: one entry per batch, never its content.
        if (req.auditInfo !== null) {
          req.auditInfo.details = {
            items: r.results.length,
            created: r.created,
            existing: r.existing,
            failed: r.failed,
          };
        }
        return presentBatch(r);
      },
    );

    app.get(
      '/v1/memories',
      {
        config: { scope: 'memories:read', action: 'memory.list' },
        schema: {
          tags,
          summary: 'List memories, newest first, with filters and a cursor',
          querystring: listQuery,
          response: {
            200: z.object({ items: z.array(memorySchema), nextCursor: z.string().nullable() }),
            ...errorsFor(400, 401, 403),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const filter: MemoryFilter = {
          scope: { user: q.user, agent: q.agent, project: q.project, session: q.session },
          tags: q.tag,
          metadata: q.metadata,
          createdAfter: q.createdAfter,
          createdBefore: q.createdBefore,
          validAt: q.validAt,
        };
        const page = await deps.memories.list(contextOf(req), filter, q.limit, q.cursor ?? null);
        return { items: page.items.map(presentMemory), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/memories/:id',
      {
        config: { scope: 'memories:read', action: 'memory.read' },
        schema: {
          tags,
          summary: 'Get one memory',
          params: idParams,
          response: { 200: memorySchema, ...errorsFor(401, 403, 404) },
        },
      },
      async (req) => presentMemory(await deps.memories.get(contextOf(req), req.params.id)),
    );

    app.patch(
      '/v1/memories/:id',
      {
        config: { scope: 'memories:write', action: 'memory.update' },
        schema: {
          tags,
          summary: 'Update a memory; the previous version is kept in its history',
          params: idParams,
          body: updateMemoryBody,
          response: { 200: memorySchema, ...errorsFor(400, 401, 403, 404, 409) },
        },
      },
      async (req) => {
        const { expectedVersion, ...patch } = req.body;
        return presentMemory(await deps.memories.update(contextOf(req), req.params.id, patch, expectedVersion));
      },
    );

    app.delete(
      '/v1/memories/:id',
      {
        config: { scope: 'memories:write', action: 'memory.delete' },
        schema: {
          tags,
          summary: 'Forget a memory and its history',
          params: idParams,
          response: { 204: z.null(), ...errorsFor(401, 403, 404) },
        },
      },
      async (req, reply) => {
        await deps.memories.forget(contextOf(req), req.params.id);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/memories/:id/history',
      {
        config: { scope: 'memories:read', action: 'memory.history' },
        schema: {
          tags,
          summary: 'Every version of a memory, oldest first; the last is current',
          params: idParams,
          response: {
            200: z.object({ memoryId: z.string(), versions: z.array(versionSchema) }),
            ...errorsFor(401, 403, 404),
          },
        },
      },
      async (req) => {
        const versions = await deps.memories.history(contextOf(req), req.params.id);
        return { memoryId: req.params.id, versions: versions.map(presentVersion) };
      },
    );

    app.post(
      '/v1/memories/search',
      {
        config: { scope: 'memories:read', action: 'memory.search', audit: 'read' },
        schema: {
          tags,
          summary:
            'Search memories: lexical (per-org BM25), vector or hybrid (the default: scores fused, with conversation context)',
          body: searchBody,
          response: { 200: searchResponse, ...errorsFor(400, 401, 403, 503) },
        },
      },
      async (req, reply) => {
        const b = req.body;
        const r = await deps.search.search(contextOf(req), {
          query: b.query,
          mode: b.mode,
          limit: b.limit,
          filter: { scope: b.scope, ...b.filters },
        });
        if (r.degraded.length > 0) void reply.header('engram-degraded', r.degraded.join(','));
        return {
          ...r,
          results: r.results.map(presentHit),
          degraded: [...r.degraded],
          degradedReasons: { ...r.degradedReasons },
        };
      },
    );
  };
