import { v7 as uuidv7 } from 'uuid';
import { errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import type { JobHandler } from './job.worker.ts';
import {
  EMBED_MEMORIES,
  EMBED_MEMORIES_MAX_IDS,
  EMBED_MEMORY,
  type EmbedMemoriesPayload,
  type EmbedMemoryPayload,
  type NewJob,
} from './job.types.ts';

/** The job that embeds a memory whose vector could not be computed when it was written. */
export const embedMemoryJob = (memoryId: string, maxAttempts: number): NewJob => ({
  id: uuidv7(),
  kind: EMBED_MEMORY,
  payload: { memoryId } satisfies EmbedMemoryPayload,
  maxAttempts,
});

/** The jobs that embed these memories: one per {@link EMBED_MEMORIES_MAX_IDS} ids, in order. */
export const embedMemoriesJobs = (memoryIds: readonly string[], maxAttempts: number): NewJob[] => {
  const jobs: NewJob[] = [];
  for (let i = 0; i < memoryIds.length; i += EMBED_MEMORIES_MAX_IDS) {
    jobs.push({
      id: uuidv7(),
      kind: EMBED_MEMORIES,
      payload: { memoryIds: memoryIds.slice(i, i + EMBED_MEMORIES_MAX_IDS) } satisfies EmbedMemoriesPayload,
      maxAttempts,
    });
  }
  return jobs;
};

/**
 * Embeds the memory's current content with the current model and stores the
 * vector. Idempotent: a deleted memory is a success with nothing to do, and
 * content edited meanwhile is left alone (the edit embedded it or enqueued
 * its own job). The embedder runs between two short transactions, never
 * inside one, so the store is not held while a model computes.
 */
export function embedMemoryHandler(deps: { tenantDb: TenantDb; embedder: Embedder }): JobHandler {
  return async (job) => {
    const memoryId = job.payload.memoryId;
    if (typeof memoryId !== 'string') throw errors.validation('embed_memory needs a memoryId');
    const memory = await deps.tenantDb.withTenant(job.orgId, ({ memories }) => memories.findMemory(memoryId));
    if (memory === undefined) return;
    const [vector] = await deps.embedder.embed([memory.content]);
    if (vector === undefined) throw errors.embedderUnavailable(new Error('no vector returned'));
    await deps.tenantDb.withTenant(job.orgId, ({ memories }) =>
      memories.upsertEmbeddingIfCurrent({
        memoryId,
        model: deps.embedder.model,
        contentHash: memory.contentHash,
        vector,
      }),
    );
  };
}

/**
 * `embed_memory` for a batch: reads the memories in one transaction, embeds
 * them (the embedder batches and caches), and stores each vector only if its
 * memory still has that content, in a second one. Idempotent like the
 * single job: deleted or edited memories are skipped, and a rerun after a
 * crash recomputes (from the cache) and overwrites the same vectors.
 */
export function embedMemoriesHandler(deps: { tenantDb: TenantDb; embedder: Embedder }): JobHandler {
  return async (job) => {
    const ids: unknown = job.payload.memoryIds;
    if (!Array.isArray(ids) || !ids.every((id): id is string => typeof id === 'string')) {
      throw errors.validation('embed_memories needs memoryIds');
    }
    const found = await deps.tenantDb.withTenant(job.orgId, ({ memories }) => memories.findMemoriesByIds(ids));
    if (found.length === 0) return;
    const vectors = await deps.embedder.embed(found.map((m) => m.content));
    if (vectors.length !== found.length) throw errors.embedderUnavailable(new Error('vectors missing'));
    await deps.tenantDb.withTenant(job.orgId, ({ memories }) =>
      memories.upsertEmbeddingsIfCurrent(
        found.map((m, i) => ({
          memoryId: m.id,
          model: deps.embedder.model,
          contentHash: m.contentHash,
          vector: vectors[i] as Float32Array,
        })),
      ),
    );
  };
}
