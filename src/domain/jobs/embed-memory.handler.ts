import { v7 as uuidv7 } from 'uuid';
import { errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import type { JobHandler } from './job.worker.ts';
import { EMBED_MEMORY, type EmbedMemoryPayload, type NewJob } from './job.types.ts';

/** The job that embeds a memory whose vector could not be computed when it was written. */
export const embedMemoryJob = (memoryId: string, maxAttempts: number): NewJob => ({
  id: uuidv7(),
  kind: EMBED_MEMORY,
  payload: { memoryId } satisfies EmbedMemoryPayload,
  maxAttempts,
});

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
