import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { AppError, errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import { embedMemoryJob } from '../jobs/embed-memory.handler.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import type { Memory, MemoryFilter, MemoryPatch, MemoryScope, MemoryVersion, NewMemory, Page } from './memory.types.ts';

export interface MemoryLimits {
  readonly memoryContentChars: number;
}

export interface RememberResult {
  readonly memory: Memory;
  /** False when the same content already existed in the same scope. */
  readonly created: boolean;
  /** False when the embedder was unavailable; an `embed_memory` job, enqueued with the write, will catch up. */
  readonly embedded: boolean;
}

export const contentHash = (content: string): string => createHash('sha256').update(content, 'utf8').digest('hex');

/** Canonical scope string: NULL-safe, so dedupe works for partial scopes. */
export const scopeKey = (s: MemoryScope | undefined): string =>
  JSON.stringify([s?.user ?? null, s?.agent ?? null, s?.project ?? null, s?.session ?? null]);

const normalizeTags = (tags: readonly string[] | undefined): string[] =>
  [...new Set((tags ?? []).map((t) => t.trim()).filter((t) => t.length > 0))].sort();

/** Memories: remember, recall by id, revise (keeping history), forget. */
export class MemoryService {
  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly embedder: Embedder;
      readonly limits: MemoryLimits;
      readonly onEmbedError?: (e: unknown) => void;
      /** Attempts of the `embed_memory` job enqueued when embedding fails (default 10). */
      readonly embedJobMaxAttempts?: number;
    },
  ) {}

  async remember(ctx: RequestContext, input: NewMemory): Promise<RememberResult> {
    const content = this.checkContent(input.content);
    checkValidity(input.validFrom ?? null, input.validTo ?? null);
    const hash = contentHash(content);
    const vector = await this.tryEmbed(content);
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ memories, jobs }) => {
      const { memory, created } = await memories.insertMemory({
        id: uuidv7(),
        scope: input.scope ?? {},
        scopeKey: scopeKey(input.scope),
        content,
        contentHash: hash,
        metadata: input.metadata ?? {},
        tags: normalizeTags(input.tags),
        source: input.source ?? null,
        validFrom: input.validFrom ?? null,
        validTo: input.validTo ?? null,
      });
      if (created && vector !== undefined) {
        await memories.upsertEmbeddings([
          { memoryId: memory.id, model: this.deps.embedder.model, contentHash: hash, vector },
        ]);
      } else if (created) {
        // Same transaction: the memory is never stored without the job that embeds it.
        await jobs.insertJob(embedMemoryJob(memory.id, this.embedJobMaxAttempts));
      }
      return { memory, created, embedded: vector !== undefined || !created };
    });
  }

  async get(ctx: RequestContext, id: string): Promise<Memory> {
    const m = await this.deps.tenantDb.withTenant(ctx.orgId, ({ memories }) => memories.findMemory(id));
    if (m === undefined) throw errors.notFound('memory', id);
    return m;
  }

  async list(ctx: RequestContext, filter: MemoryFilter, limit: number, cursor: string | null): Promise<Page<Memory>> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ memories }) => memories.findMemories(filter, limit, cursor));
  }

  async update(ctx: RequestContext, id: string, patch: MemoryPatch, expectedVersion?: number): Promise<Memory> {
    const content = patch.content === undefined ? undefined : this.checkContent(patch.content);
    const hash = content === undefined ? undefined : contentHash(content);
    const vector = content === undefined ? undefined : await this.tryEmbed(content);
    const updated = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ memories, jobs }) => {
      const current = await memories.findMemory(id);
      if (current === undefined) return undefined;
      checkValidity(
        patch.validFrom === undefined ? current.validFrom : patch.validFrom,
        patch.validTo === undefined ? current.validTo : patch.validTo,
      );
      const m = await memories.updateMemory(
        id,
        {
          ...patch,
          ...(content === undefined ? {} : { content, contentHash: hash }),
          ...(patch.tags === undefined ? {} : { tags: normalizeTags(patch.tags) }),
        },
        expectedVersion,
      );
      if (m !== undefined && vector !== undefined && hash !== undefined) {
        await memories.upsertEmbeddings([{ memoryId: id, model: this.deps.embedder.model, contentHash: hash, vector }]);
      } else if (m !== undefined && content !== undefined && m.contentHash !== current.contentHash) {
        await jobs.insertJob(embedMemoryJob(id, this.embedJobMaxAttempts));
      }
      return m;
    });
    if (updated === undefined) throw errors.notFound('memory', id);
    return updated;
  }

  async forget(ctx: RequestContext, id: string): Promise<void> {
    const deleted = await this.deps.tenantDb.withTenant(ctx.orgId, ({ memories }) => memories.deleteMemory(id));
    if (!deleted) throw errors.notFound('memory', id);
  }

  async history(ctx: RequestContext, id: string): Promise<MemoryVersion[]> {
    const h = await this.deps.tenantDb.withTenant(ctx.orgId, ({ memories }) => memories.findHistory(id));
    if (h === undefined) throw errors.notFound('memory', id);
    return h;
  }

  private checkContent(raw: string): string {
    if (raw.trim().length === 0) throw errors.validation('content must not be empty', { field: 'content' });
    if (raw.length > this.deps.limits.memoryContentChars) {
      throw errors.validation(`content is longer than ${this.deps.limits.memoryContentChars} characters`, {
        field: 'content',
        max: this.deps.limits.memoryContentChars,
      });
    }
    return raw;
  }

  private get embedJobMaxAttempts(): number {
    return this.deps.embedJobMaxAttempts ?? 10;
  }

  /**
   * A write never fails because the embedder is down: the memory is stored
   * with an `embed_memory` job and embedded later. While the embedder's
   * circuit is open the provider is not called at all (the breaker fails
   * fast), but a cached vector for the same content is still used.
   */
  private async tryEmbed(content: string): Promise<Float32Array | undefined> {
    try {
      const [v] = await this.deps.embedder.embed([content]);
      return v;
    } catch (e) {
      if (e instanceof AppError && e.code === 'EMBEDDING_DIMENSION_MISMATCH') throw e;
      this.deps.onEmbedError?.(e);
      return undefined;
    }
  }
}

function checkValidity(from: Date | null, to: Date | null): void {
  if (from !== null && to !== null && to < from) {
    throw errors.validation('validTo must not be before validFrom', { field: 'validTo' });
  }
}
