import { EMBED_MAX_BATCH, EMBED_MAX_CHARS, type Embedder } from '../../ports/embedder.ts';
import type { GraphEmbeddingRow, GraphEmbeddingTask, TenantDb } from '../../ports/tenant-db.ts';

/** The text an entity's vector is computed from. */
export const entityText = (e: { name: string; entityType: string; observations: readonly string[] }): string =>
  `${e.name} (${e.entityType}): ${e.observations.join('; ')}`.slice(0, EMBED_MAX_CHARS);

/** When queued entities are embedded in the background. */
export interface GraphEmbeddingTiming {
  /** Wait until the graph has had no call for this long… */
  readonly idleMs: number;
  /** …but no longer than this after a write queued work. */
  readonly maxDelayMs: number;
}

export const DEFAULT_GRAPH_EMBEDDING_TIMING: GraphEmbeddingTiming = Object.freeze({ idleMs: 200, maxDelayMs: 5_000 });

export interface EmbeddingReport {
  readonly embedded: number;
  readonly error?: unknown;
}

/**
 * Computes the vectors of knowledge graph entities off the request path.
 * Writes queue the entities they create or change (in the store, in their own
 * transaction, so the queue is durable) and call `queued`; this service then
 * embeds the org's queue once the graph has been idle for `idleMs` (at most
 * `maxDelayMs` after the write), in embedder batches, storing each vector in
 * a transaction of its own: on the embedded store, one session serves every
 * request, and inserting a vector into the HNSW index costs milliseconds, so a
 * request waits behind at most one of them. Until then an entity keeps its
 * previous vector, or is found lexically only. A vector is stored only if its
 * entity is still at the revision embedded. If the embedder fails, the work
 * stays queued for the next write or the server's periodic sweep
 * (`embedOrgs`).
 */
export class GraphEmbeddingService {
  private readonly timing: GraphEmbeddingTiming;
  private readonly pending = new Set<string>();
  private firstQueuedAt = 0;
  private lastCallAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<EmbeddingReport> | undefined;
  private closed = false;

  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly embedder: Embedder;
      readonly timing?: Partial<GraphEmbeddingTiming> | undefined;
      readonly onEmbedError?: ((e: unknown) => void) | undefined;
      /** Vectors were stored (the graph counts them towards its planner statistics). */
      readonly onStored?: ((count: number) => Promise<void>) | undefined;
    },
  ) {
    this.timing = { ...DEFAULT_GRAPH_EMBEDDING_TIMING, ...deps.timing };
  }

  /** A graph call ran: background work waits for a quiet moment. */
  touched(): void {
    this.lastCallAt = Date.now();
  }

  /** A committed write queued entities of `orgId`. */
  queued(orgId: string): void {
    if (this.closed) return;
    if (this.pending.size === 0) this.firstQueuedAt = Date.now();
    this.pending.add(orgId);
    this.lastCallAt = Date.now();
    this.arm();
  }

  /** Embeds what writes queued, now, and resolves when it is done (tests, shutdown). */
  async flush(): Promise<EmbeddingReport> {
    clearTimeout(this.timer);
    this.timer = undefined;
    let embedded = 0;
    for (;;) {
      const r = await (this.running ?? this.start());
      embedded += r.embedded;
      if (r.error !== undefined) return { embedded, error: r.error };
      if (this.pending.size === 0) return { embedded };
    }
  }

  /** Embeds every queued or stale entity of the given orgs (the periodic sweep). */
  async embedOrgs(orgIds: readonly string[]): Promise<EmbeddingReport> {
    let embedded = 0;
    for (const orgId of orgIds) {
      const r = await this.embedOrg(orgId);
      embedded += r.embedded;
      if (r.error !== undefined) return { embedded, error: r.error };
    }
    return { embedded };
  }

  /** Stops scheduling and waits for a run in progress (queued work stays in the store). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private arm(): void {
    if (this.timer !== undefined || this.running !== undefined || this.pending.size === 0 || this.closed) return;
    const due = Math.min(this.lastCallAt + this.timing.idleMs, this.firstQueuedAt + this.timing.maxDelayMs);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        if (now < Math.min(this.lastCallAt + this.timing.idleMs, this.firstQueuedAt + this.timing.maxDelayMs)) {
          this.arm();
          return;
        }
        void this.start();
      },
      Math.max(0, due - Date.now()),
    );
    // Queued work is in the store: it never needs to keep the process alive.
    this.timer.unref();
  }

  private start(): Promise<EmbeddingReport> {
    const orgs = [...this.pending];
    this.pending.clear();
    const run = (async (): Promise<EmbeddingReport> => {
      const r = await this.embedOrgs(orgs);
      if (r.error !== undefined) this.deps.onEmbedError?.(r.error);
      return r;
    })();
    this.running = run;
    void run.finally(() => {
      this.running = undefined;
      this.arm();
    });
    return run;
  }

  private async embedOrg(orgId: string): Promise<EmbeddingReport> {
    const { embedder, tenantDb } = this.deps;
    let embedded = 0;
    try {
      for (;;) {
        const tasks = await tenantDb.withTenant(orgId, ({ graph }) =>
          graph.findStaleEmbeddings(embedder.model, EMBED_MAX_BATCH),
        );
        if (tasks.length === 0) break;
        const rows = embeddingRows(tasks, await embedder.embed(tasks.map(entityText)), embedder.model);
        let stored = 0;
        for (const row of rows) {
          stored += await tenantDb.withTenant(orgId, ({ graph }) => graph.updateEmbeddings([row]));
        }
        embedded += stored;
        await this.deps.onStored?.(stored);
        // Nothing stored: every entity changed meanwhile, and its write queued it again.
        if (tasks.length < EMBED_MAX_BATCH || stored === 0) break;
      }
    } catch (error) {
      return { embedded, error };
    }
    return { embedded };
  }
}

function embeddingRows(
  tasks: readonly GraphEmbeddingTask[],
  vectors: readonly Float32Array[],
  model: string,
): GraphEmbeddingRow[] {
  return tasks.flatMap((t, i) => {
    const vector = vectors[i];
    return vector === undefined ? [] : [{ id: t.id, revision: t.revision, model, vector }];
  });
}
