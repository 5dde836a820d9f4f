import type { Embedder } from '../../ports/embedder.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';

export interface ReembedReport {
  readonly orgs: number;
  readonly embedded: number;
  readonly error?: unknown;
}

/**
 * Fills in vectors that are missing for the current model: memories written
 * while the embedder was down, edited content, or every memory after a model
 * change. Reads and writes run in short tenant transactions; embedding runs
 * between them, so the store is never held while a model computes.
 */
export class ReembedService {
  constructor(
    private readonly deps: { tenantDb: TenantDb; system: SystemStore; embedder: Embedder; batchSize?: number },
  ) {}

  async run(onProgress?: (done: number) => void): Promise<ReembedReport> {
    const batch = this.deps.batchSize ?? 64;
    const model = this.deps.embedder.model;
    const orgIds = await this.deps.system.findOrgIds();
    let embedded = 0;
    try {
      for (const orgId of orgIds) {
        for (;;) {
          const todo = await this.deps.tenantDb.withTenant(orgId, ({ memories }) =>
            memories.findMissingEmbeddings(model, batch),
          );
          if (todo.length === 0) break;
          const vectors = await this.deps.embedder.embed(todo.map((t) => t.content));
          await this.deps.tenantDb.withTenant(orgId, ({ memories }) =>
            memories.upsertEmbeddings(
              todo.flatMap((t, i) => {
                const vector = vectors[i];
                return vector === undefined ? [] : [{ memoryId: t.id, model, contentHash: t.contentHash, vector }];
              }),
            ),
          );
          embedded += todo.length;
          onProgress?.(embedded);
          if (todo.length < batch) break;
        }
      }
    } catch (error) {
      return { orgs: orgIds.length, embedded, error };
    }
    return { orgs: orgIds.length, embedded };
  }
}
