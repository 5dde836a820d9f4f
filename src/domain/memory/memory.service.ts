import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { AppError, errors, type ErrorCode } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { MemoryRow, TenantDb } from '../../ports/tenant-db.ts';
import { embedMemoriesJobs, embedMemoryJob } from '../jobs/embed-memory.handler.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import type { Memory, MemoryFilter, MemoryPatch, MemoryScope, MemoryVersion, NewMemory, Page } from './memory.types.ts';

export interface MemoryLimits {
  readonly memoryContentChars: number;
  /** Metadata as JSON, in UTF-8 bytes: it is stored, indexed and copied into the history on every update. */
  readonly memoryMetadataBytes: number;
  /** Nesting of metadata objects and arrays; the top-level object is depth 1. */
  readonly memoryMetadataDepth: number;
}

export interface RememberResult {
  readonly memory: Memory;
  /** False when the same content already existed in the same scope. */
  readonly created: boolean;
  /** False when the embedder was unavailable; an `embed_memory` job, enqueued with the write, will catch up. */
  readonly embedded: boolean;
}

/** The most memories one `rememberMany` takes: the REST batch, MCP `remember_many` and `engram import` share it. */
export const REMEMBER_MANY_MAX = 1_000;

/** What became of one item of a `rememberMany`, at its position in the input. */
export type RememberManyOutcome =
  | {
      readonly index: number;
      /** `existing`: the same content was already stored in that scope, or came earlier in the batch. */
      readonly status: 'created' | 'existing';
      readonly memory: Memory;
    }
  | {
      readonly index: number;
      readonly status: 'error';
      readonly error: { readonly code: ErrorCode; readonly message: string; readonly details?: unknown };
    };

export interface RememberManyResult {
  /** One per input item, in input order. */
  readonly results: readonly RememberManyOutcome[];
  readonly created: number;
  readonly existing: number;
  readonly failed: number;
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
      /** Told after a write enqueued embedding jobs, so a worker can start at once. */
      readonly onQueued?: () => void;
      /** Told when a `rememberMany` starts and ends, so background work can yield to imports. */
      readonly bulkWrites?: { started(): void; ended(): void };
    },
  ) {}

  async remember(ctx: RequestContext, input: NewMemory): Promise<RememberResult> {
    const row = this.toRow(input);
    const vector = await this.tryEmbed(row.content);
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ memories, jobs }) => {
      const { memory, created } = await memories.insertMemory(row);
      if (created && vector !== undefined) {
        await memories.upsertEmbeddings([
          { memoryId: memory.id, model: this.deps.embedder.model, contentHash: row.contentHash, vector },
        ]);
      } else if (created) {
        // Same transaction: the memory is never stored without the job that embeds it.
        await jobs.insertJob(embedMemoryJob(memory.id, this.embedJobMaxAttempts));
      }
      return { memory, created, embedded: vector !== undefined || !created };
    });
  }

  /**
   * Remembers up to {@link REMEMBER_MANY_MAX} memories at once, for imports.
   * Each item is checked like `remember`; an item that fails its check is
   * reported in its place and the others are still written. All valid items
   * go in one transaction, as one multi-row insert: either every one of them
   * is stored or (on a store error, which throws) none. Duplicates within the
   * batch are stored once (the later ones report `existing`). Vectors are not
   * computed here: the transaction enqueues `embed_memories` jobs, one per
   * 128 new memories (EMBED_MEMORIES_MAX_IDS); lexical search finds the
   * memories as soon as the call returns.
   */
  async rememberMany(ctx: RequestContext, inputs: readonly NewMemory[]): Promise<RememberManyResult> {
    if (inputs.length === 0 || inputs.length > REMEMBER_MANY_MAX) {
      throw errors.validation(`A batch holds 1 to ${REMEMBER_MANY_MAX} memories, not ${inputs.length}`, {
        field: 'items',
        max: REMEMBER_MANY_MAX,
      });
    }
    const rows: MemoryRow[] = [];
    const rowByKey = new Map<string, number>();
    const slots: Array<{ row: number } | { error: AppError }> = inputs.map((input) => {
      try {
        const row = this.toRow(input);
        const key = `${row.contentHash}:${row.scopeKey}`;
        let at = rowByKey.get(key);
        if (at === undefined) {
          at = rows.push(row) - 1;
          rowByKey.set(key, at);
        }
        return { row: at };
      } catch (e) {
        if (e instanceof AppError) return { error: e };
        throw e;
      }
    });
    let queued = false;
    this.deps.bulkWrites?.started();
    let stored: Array<{ memory: Memory; created: boolean }>;
    try {
      stored =
        rows.length === 0
          ? []
          : await this.deps.tenantDb.withTenant(ctx.orgId, async ({ memories, jobs }) => {
              const written = await memories.insertMemories(rows);
              const fresh = written.filter((w) => w.created).map((w) => w.memory.id);
              const embedJobs = embedMemoriesJobs(fresh, this.embedJobMaxAttempts);
              await jobs.insertJobs(embedJobs);
              queued = embedJobs.length > 0;
              return written;
            });
    } finally {
      this.deps.bulkWrites?.ended();
    }
    if (queued) this.deps.onQueued?.();
    const reported = new Set<number>();
    const results = slots.map((slot, index): RememberManyOutcome => {
      if ('error' in slot) {
        const { code, message, details } = slot.error;
        return {
          index,
          status: 'error',
          error: details === undefined ? { code, message } : { code, message, details },
        };
      }
      const w = stored[slot.row];
      if (w === undefined) throw errors.internal(new Error('batch result missing'));
      const first = !reported.has(slot.row);
      reported.add(slot.row);
      return { index, status: w.created && first ? 'created' : 'existing', memory: w.memory };
    });
    const count = (s: RememberManyOutcome['status']) => results.filter((r) => r.status === s).length;
    return { results, created: count('created'), existing: count('existing'), failed: count('error') };
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
    if (patch.metadata !== undefined) this.checkMetadata(patch.metadata);
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

  /** A checked, normalised row for the store; throws VALIDATION_FAILED like `remember`. */
  private toRow(input: NewMemory): MemoryRow {
    const content = this.checkContent(input.content);
    if (input.metadata !== undefined) this.checkMetadata(input.metadata);
    checkValidity(input.validFrom ?? null, input.validTo ?? null);
    return {
      id: uuidv7(),
      scope: input.scope ?? {},
      scopeKey: scopeKey(input.scope),
      content,
      contentHash: contentHash(content),
      metadata: input.metadata ?? {},
      tags: normalizeTags(input.tags),
      source: input.source ?? null,
      validFrom: input.validFrom ?? null,
      validTo: input.validTo ?? null,
    };
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

  /** Size and depth caps, here so REST, MCP, the batch and the CLI import all get them. */
  private checkMetadata(metadata: Record<string, unknown>): void {
    const maxDepth = this.deps.limits.memoryMetadataDepth;
    if (depthExceeds(metadata, maxDepth)) {
      throw errors.validation(`metadata is nested deeper than ${maxDepth} levels`, {
        field: 'metadata',
        limit: 'depth',
        max: maxDepth,
      });
    }
    const maxBytes = this.deps.limits.memoryMetadataBytes;
    const bytes = Buffer.byteLength(JSON.stringify(metadata));
    if (bytes > maxBytes) {
      throw errors.validation(`metadata is ${bytes} bytes as JSON; at most ${maxBytes} are kept per memory`, {
        field: 'metadata',
        limit: 'bytes',
        max: maxBytes,
        bytes,
      });
    }
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

/** True when `value` nests objects or arrays deeper than `max` (the value itself is level 1); stops at the first. */
function depthExceeds(value: unknown, max: number): boolean {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop() as { v: unknown; depth: number };
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) stack.push({ v: child, depth: depth + 1 });
  }
  return false;
}
