import { AppError, errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import type { DegradedReason, RankedMemory, SearchHit, SearchRequest, SearchResult, Signal } from './search.types.ts';

export interface SearchLimits {
  readonly searchQueryChars: number;
  readonly searchLimit: number;
}

/**
 * The checks every search shares: a non-empty query within the length limit
 * and a whole-number limit within range (default 10). Returns them trimmed
 * and defaulted, or throws VALIDATION_FAILED naming the field.
 */
export function checkSearchInput(
  rawQuery: string,
  rawLimit: number | undefined,
  limits: SearchLimits,
): { query: string; limit: number } {
  const query = rawQuery.trim();
  if (query.length === 0) throw errors.validation('query must not be empty', { field: 'query' });
  if (query.length > limits.searchQueryChars) {
    throw errors.validation(`query is longer than ${limits.searchQueryChars} characters`, {
      field: 'query',
      max: limits.searchQueryChars,
    });
  }
  const limit = rawLimit ?? 10;
  if (!Number.isInteger(limit) || limit < 1 || limit > limits.searchLimit) {
    throw errors.validation(`limit must be an integer from 1 to ${limits.searchLimit}`, { field: 'limit' });
  }
  return { query, limit };
}

/**
 * The query's vector for a search in `mode`, or — when the embedder fails and
 * the other signals can still answer — undefined and why, for `degradedReasons`.
 * Vector-only searches and a wrong dimension (a configuration error) throw.
 */
export async function embedQueryOrDegrade(
  embedder: Embedder,
  query: string,
  mode: 'lexical' | 'vector' | 'hybrid',
  onEmbedError: ((e: unknown) => void) | undefined,
): Promise<{ vector: Float32Array | undefined; degraded: DegradedReason | undefined }> {
  if (mode === 'lexical') return { vector: undefined, degraded: undefined };
  try {
    const [vector] = await embedder.embed([query]);
    return { vector, degraded: undefined };
  } catch (e) {
    if (mode === 'vector' || (e instanceof AppError && e.code === 'EMBEDDING_DIMENSION_MISMATCH')) throw e;
    onEmbedError?.(e);
    // Our own errors carry messages made from known facts; anything else stays generic.
    const reason =
      e instanceof AppError
        ? { code: e.code, message: e.message }
        : { code: 'EMBEDDER_UNAVAILABLE', message: 'The embedding service failed' };
    return { vector: undefined, degraded: reason };
  }
}

/** Reciprocal rank fusion constant (Cormack et al. 2009): damps the head of each list. */
export const RRF_K = 60;
const MAX_TERMS = 64;

/** Lower-cased word tokens; the lexical signal matches any of them. */
export function queryTerms(query: string): string[] {
  const words =
    query
      .toLowerCase()
      .normalize('NFKC')
      .match(/[\p{L}\p{N}]+/gu) ?? [];
  return [...new Set(words)].slice(0, MAX_TERMS);
}

/** One fused item: its RRF score and, per signal that found it, its rank and score there. */
export interface Fused<T, S extends string> {
  readonly item: T;
  readonly score: number;
  readonly signals: Partial<Record<S, { rank: number; score: number }>>;
}

/**
 * Reciprocal rank fusion of any ranked lists: score = Σ w_signal / (k + rank),
 * weight 1 unless given; ties broken by id, descending. Memory and code search
 * both fuse with it.
 */
export function fuseRanked<T, S extends string>(
  lists: Partial<Record<S, ReadonlyArray<{ readonly item: T; readonly score: number }>>>,
  idOf: (item: T) => string,
  limit: number,
  weights: Partial<Record<S, number>> = {},
): Array<Fused<T, S>> {
  const byId = new Map<string, { item: T; score: number; signals: Fused<T, S>['signals'] }>();
  for (const [signal, list] of Object.entries(lists) as Array<[S, ReadonlyArray<{ item: T; score: number }>]>) {
    const weight = weights[signal] ?? 1;
    list.forEach((r, i) => {
      const rank = i + 1;
      const id = idOf(r.item);
      const entry = byId.get(id) ?? { item: r.item, score: 0, signals: {} };
      entry.signals = { ...entry.signals, [signal]: { rank, score: r.score } };
      entry.score += weight / (RRF_K + rank);
      byId.set(id, entry);
    });
  }
  return [...byId.entries()]
    .sort(([ia, a], [ib, b]) => b.score - a.score || (ia < ib ? 1 : -1))
    .slice(0, limit)
    .map(([, e]) => e);
}

/** Fuses ranked lists by reciprocal rank: score = Σ 1 / (k + rank). */
export function fuse(lists: Partial<Record<Signal, readonly RankedMemory[]>>, limit: number): SearchHit[] {
  const items: Partial<Record<Signal, Array<{ item: RankedMemory['memory']; score: number }>>> = {};
  for (const [signal, list] of Object.entries(lists) as Array<[Signal, readonly RankedMemory[]]>) {
    items[signal] = list.map((r) => ({ item: r.memory, score: r.score }));
  }
  return fuseRanked(items, (m) => m.id, limit).map((f) => ({ memory: f.item, score: f.score, signals: f.signals }));
}

/**
 * Lexical, vector and hybrid (RRF) search over memories. Every hit says which
 * signals found it, with rank and score. In hybrid mode a failing embedder
 * degrades the answer to lexical only and says so in `degraded`.
 */
export class SearchService {
  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly system: SystemStore;
      readonly embedder: Embedder;
      readonly limits: SearchLimits;
      readonly onEmbedError?: (e: unknown) => void;
    },
  ) {}

  async search(ctx: RequestContext, req: SearchRequest): Promise<SearchResult> {
    const { query, limit } = checkSearchInput(req.query, req.limit, this.deps.limits);
    const mode = req.mode ?? 'hybrid';
    const degraded: Signal[] = [];
    const degradedReasons: Partial<Record<Signal, DegradedReason>> = {};
    const { embedder } = this.deps;

    const { vector, degraded: why } = await embedQueryOrDegrade(embedder, query, mode, this.deps.onEmbedError);
    if (why !== undefined) {
      degraded.push('vector');
      degradedReasons.vector = why;
    }
    const lexicalRanker = await this.deps.system.lexicalRanker();
    const candidates = mode === 'hybrid' ? Math.min(Math.max(limit * 4, 40), 200) : limit;
    const terms = queryTerms(query);

    // Each signal reads in its own short tenant transaction, so on a pool the
    // two run side by side (hybrid latency ≈ the slower signal, not the sum).
    const { tenantDb } = this.deps;
    const [lexical, vectorHits] = await Promise.all([
      mode === 'vector'
        ? undefined
        : tenantDb.withTenant(ctx.orgId, ({ memories }) =>
            memories.searchLexical({ terms, limit: candidates, filter: req.filter }),
          ),
      vector === undefined
        ? undefined
        : tenantDb.withTenant(ctx.orgId, ({ memories }) =>
            memories.searchVector({
              vector,
              model: embedder.model,
              dimension: embedder.dimension,
              limit: candidates,
              filter: req.filter,
            }),
          ),
    ]);
    const lists: Partial<Record<Signal, RankedMemory[]>> = {};
    if (lexical !== undefined) lists.lexical = lexical;
    if (vectorHits !== undefined) lists.vector = vectorHits;

    const results: SearchHit[] =
      mode === 'hybrid'
        ? fuse(lists, limit)
        : (lists[mode] ?? []).slice(0, limit).map((r, i) => ({
            memory: r.memory,
            score: r.score,
            signals: { [mode]: { rank: i + 1, score: r.score } },
          }));
    return { results, mode, degraded, degradedReasons, lexicalRanker, model: embedder.model };
  }
}
