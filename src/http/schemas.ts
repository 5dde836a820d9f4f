import { z } from 'zod';
import { REMEMBER_MANY_MAX, type RememberManyResult } from '../domain/memory/memory.service.ts';
import type { Memory, MemoryVersion } from '../domain/memory/memory.types.ts';
import type { SearchHit } from '../domain/search/search.types.ts';
import type { ApiKey } from '../domain/tenancy/tenancy.types.ts';

/** Wire schemas (zod → validation + OpenAPI) and presenters from domain objects. */

const idText = z.string().trim().min(1).max(200);

export const scopeSchema = z
  .strictObject({
    user: idText.optional(),
    agent: idText.optional(),
    project: idText.optional(),
    session: idText.optional(),
  })
  .describe('Who the memory is about or for; free-form ids');

const tag = z.string().trim().min(1).max(100);
const metadataSchema = z.record(z.string(), z.unknown()).describe('Arbitrary JSON object');
const isoDate = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    requestId: z.string(),
    details: z.unknown().optional(),
  }),
});

export const memorySchema = z.object({
  id: z.string(),
  scope: z.object({
    user: z.string().optional(),
    agent: z.string().optional(),
    project: z.string().optional(),
    session: z.string().optional(),
  }),
  content: z.string(),
  contentHash: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  tags: z.array(z.string()),
  source: z.string().nullable(),
  version: z.number().int(),
  validFrom: z.string().nullable(),
  validTo: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type MemoryJson = z.infer<typeof memorySchema>;

export const presentMemory = (m: Memory): MemoryJson => ({
  id: m.id,
  scope: { ...m.scope },
  content: m.content,
  contentHash: m.contentHash,
  metadata: m.metadata,
  tags: [...m.tags],
  source: m.source,
  version: m.version,
  validFrom: m.validFrom?.toISOString() ?? null,
  validTo: m.validTo?.toISOString() ?? null,
  createdAt: m.createdAt.toISOString(),
  updatedAt: m.updatedAt.toISOString(),
});

export const createMemoryBody = z.strictObject({
  content: z.string().min(1),
  scope: scopeSchema.optional(),
  metadata: metadataSchema.optional(),
  tags: z.array(tag).max(100).optional(),
  source: z.string().trim().min(1).max(200).optional(),
  validFrom: isoDate.optional(),
  validTo: isoDate.optional(),
});

/** The bulk write: each item is exactly a `POST /v1/memories` body. */
export const createMemoriesBatchBody = z.strictObject({
  items: z
    .array(createMemoryBody)
    .min(1)
    .max(REMEMBER_MANY_MAX)
    .describe(`1 to ${REMEMBER_MANY_MAX} memories, each the body of POST /v1/memories`),
});

export const memoriesBatchResponse = z.object({
  results: z
    .array(
      z.object({
        index: z.number().int().describe('Position of the item in `items`'),
        status: z
          .enum(['created', 'existing', 'error'])
          .describe('`existing`: already stored in that scope, or earlier in this batch'),
        memory: memorySchema.optional(),
        error: z
          .object({ code: z.string(), message: z.string(), details: z.unknown().optional() })
          .optional()
          .describe('Why this item was not stored; the other items were'),
      }),
    )
    .describe('One per item, in input order'),
  created: z.number().int(),
  existing: z.number().int(),
  failed: z.number().int(),
});

export const presentBatch = (r: RememberManyResult): z.infer<typeof memoriesBatchResponse> => ({
  results: r.results.map((o) =>
    o.status === 'error'
      ? { index: o.index, status: o.status, error: { ...o.error } }
      : { index: o.index, status: o.status, memory: presentMemory(o.memory) },
  ),
  created: r.created,
  existing: r.existing,
  failed: r.failed,
});

export const updateMemoryBody = z
  .strictObject({
    content: z.string().min(1).optional(),
    metadata: metadataSchema.optional(),
    tags: z.array(tag).max(100).optional(),
    source: z.string().trim().min(1).max(200).nullable().optional(),
    validFrom: isoDate.nullable().optional(),
    validTo: isoDate.nullable().optional(),
    expectedVersion: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Optimistic concurrency: fail with 409 if the memory moved on'),
  })
  .refine((b) => Object.keys(b).some((k) => k !== 'expectedVersion'), { message: 'nothing to update' });

const filtersSchema = z.strictObject({
  tags: z.array(tag).max(100).optional().describe('Every tag must be present'),
  metadata: metadataSchema.optional().describe('JSON containment'),
  createdAfter: isoDate.optional(),
  createdBefore: isoDate.optional(),
  validAt: isoDate.optional(),
});

export const searchBody = z.strictObject({
  query: z.string().min(1),
  mode: z.enum(['lexical', 'vector', 'hybrid']).optional(),
  limit: z.number().int().min(1).optional(),
  scope: scopeSchema.optional(),
  filters: filtersSchema.optional(),
});

const oneOrMany = z.union([tag, z.array(tag)]).transform((v) => (Array.isArray(v) ? v : [v]));

export const listQuery = z.strictObject({
  user: idText.optional(),
  agent: idText.optional(),
  project: idText.optional(),
  session: idText.optional(),
  tag: oneOrMany.optional(),
  metadata: z
    .string()
    .transform((s, ctx) => {
      try {
        const v: unknown = JSON.parse(s);
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
      } catch {
        // fall through to the issue below
      }
      ctx.addIssue({ code: 'custom', message: 'metadata must be a JSON object' });
      return z.NEVER;
    })
    .optional(),
  createdAfter: isoDate.optional(),
  createdBefore: isoDate.optional(),
  validAt: isoDate.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

export const idParams = z.strictObject({ id: z.string().min(1).max(100) });

const signalScore = z.object({ rank: z.number().int(), score: z.number() });
export const searchResponse = z.object({
  results: z.array(
    z.object({
      memory: memorySchema,
      score: z.number(),
      signals: z
        .object({
          lexical: signalScore.optional(),
          vector: signalScore.optional(),
          context: signalScore.optional(),
          graph: signalScore.optional(),
          rerank: signalScore.optional(),
        })
        .describe(
          'Which signals found the hit, with its rank and raw score in each (context: the turn next to a lexical hit; graph: names an entity the knowledge graph relates to one in the query; rerank: the optional reranker)',
        ),
    }),
  ),
  mode: z.enum(['lexical', 'vector', 'hybrid']),
  degraded: z.array(z.enum(['lexical', 'vector', 'context', 'graph', 'rerank'])),
  degradedReasons: z
    .object({
      lexical: z.object({ code: z.string(), message: z.string() }).optional(),
      vector: z.object({ code: z.string(), message: z.string() }).optional(),
      rerank: z.object({ code: z.string(), message: z.string() }).optional(),
    })
    .describe('Why each degraded signal is missing: an error code and a safe message'),
  lexicalRanker: z.enum(['bm25', 'ts_rank_cd']),
  model: z.string(),
});

export const presentHit = (h: SearchHit) => ({ memory: presentMemory(h.memory), score: h.score, signals: h.signals });

export const versionSchema = z.object({
  version: z.number().int(),
  scope: memorySchema.shape.scope,
  content: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  tags: z.array(z.string()),
  source: z.string().nullable(),
  validFrom: z.string().nullable(),
  validTo: z.string().nullable(),
  writtenAt: z.string(),
  supersededAt: z.string().nullable(),
});

export const presentVersion = (v: MemoryVersion): z.infer<typeof versionSchema> => ({
  version: v.version,
  scope: { ...v.scope },
  content: v.content,
  metadata: v.metadata,
  tags: [...v.tags],
  source: v.source,
  validFrom: v.validFrom?.toISOString() ?? null,
  validTo: v.validTo?.toISOString() ?? null,
  writtenAt: v.writtenAt.toISOString(),
  supersededAt: v.supersededAt?.toISOString() ?? null,
});

export const apiKeySchema = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(z.string()),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});

export const presentApiKey = (k: ApiKey): z.infer<typeof apiKeySchema> => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  scopes: [...k.scopes],
  createdAt: k.createdAt.toISOString(),
  expiresAt: k.expiresAt?.toISOString() ?? null,
  revokedAt: k.revokedAt?.toISOString() ?? null,
  lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
});
