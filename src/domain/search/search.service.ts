import { AppError, errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { Reranker } from '../../ports/reranker.ts';
import type { SystemStore, TenantDb, TenantStores } from '../../ports/tenant-db.ts';
import { scopeKey } from '../memory/memory.service.ts';
import type { MemoryFilter } from '../memory/memory.types.ts';
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
    return { vector: undefined, degraded: degradedReason(e, 'EMBEDDER_UNAVAILABLE', 'The embedding service failed') };
  }
}

/** Why a signal is missing, safe to show: our own errors carry messages made from known facts; anything else stays generic. */
function degradedReason(e: unknown, code: string, message: string): DegradedReason {
  return e instanceof AppError ? { code: e.code, message: e.message } : { code, message };
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
 * weight 1 unless given; ties broken by id, descending. Code search fuses with it; memory search fuses by score ({@link fuseScores}).
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

/** How much each signal counts in hybrid search (see {@link fuseScores}). */
export interface SearchWeights {
  readonly lexical: number;
  readonly vector: number;
  /** The share of a hit's BM25 score passed to its neighbouring turns. */
  readonly context: number;
  /** Weight of memories reached through the knowledge graph (scaled by their own best score). */
  readonly graph: number;
}

/**
 * Default weights per embedder kind, measured on LoCoMo (docs/search.md). The
 * builtin hashing embedder only echoes the lexical signal (vector hit@10
 * 0.33 vs BM25 0.69): its vector breaks ties and little more. A model's
 * vector counts as much as BM25.
 */
export function defaultSearchWeights(provider: Embedder['provider']): SearchWeights {
  return { lexical: 1, vector: provider === 'builtin' ? 0.02 : 1, context: 0.2, graph: 0.3 };
}

/** Options of memory search: the defaults live here, not in a face. */
export interface SearchOptions {
  readonly weights: SearchWeights;
  /** Turns further apart in event time than this are not neighbours (default 1 h). */
  readonly neighbourWindowSeconds: number;
  /** How many of the best lexical hits lend context to their neighbours (default 20). */
  readonly contextHits: number;
  /** How many fused hits the reranker (when configured) re-scores (default 30). */
  readonly rerankCandidates: number;
}

export const DEFAULT_NEIGHBOUR_WINDOW_SECONDS = 3_600;
export const DEFAULT_CONTEXT_HITS = 20;
export const DEFAULT_RERANK_CANDIDATES = 30;
/**
 * Lexical candidates hybrid search fuses (BM25 scores every match anyway;
 * this bounds the rows read back). A deeper list let context reach turns
 * that lexical ranked 40th to 200th: LoCoMo hit@10 +0.01 over 40 candidates.
 */
export const HYBRID_LEXICAL_CANDIDATES = 200;

interface Scored {
  readonly memory: RankedMemory['memory'];
  readonly score: number;
}

/**
 * Conversation context: every lexical hit passes `weight` × its BM25 score to
 * the turns written just before and after it (same scope, close in time), and
 * a turn keeps the best share it is given. The answer to a question is often
 * the turn next to the one that repeats its words. Returns the boosted turns
 * best first with the boost as their score.
 */
export function contextBoosts(
  lexical: readonly Scored[],
  neighbours: ReadonlyArray<{ of: string; memory: RankedMemory['memory'] }>,
  weight: number,
): Scored[] {
  const scoreOf = new Map(lexical.map((h) => [h.memory.id, h.score]));
  const best = new Map<string, Scored>();
  for (const n of neighbours) {
    const boost = weight * (scoreOf.get(n.of) ?? 0);
    const seen = best.get(n.memory.id);
    if (boost > 0 && (seen === undefined || boost > seen.score))
      best.set(n.memory.id, { memory: n.memory, score: boost });
  }
  return [...best.values()].sort((a, b) => b.score - a.score || (a.memory.id < b.memory.id ? 1 : -1));
}

/**
 * Score-aware fusion: each list's scores are scaled to [0, 1] (lexical and
 * context together by the best lexical-plus-context total, since they are the
 * same BM25 units; vector by min–max over its candidates), weighted and
 * summed. Unlike rank fusion, a weak signal's near-ties cannot outvote a
 * strong signal's clear winner, so a weak embedder cannot pull hybrid below
 * lexical. Ties go to the newer memory.
 */
export function fuseScores(
  lists: Partial<Record<Signal, readonly Scored[]>>,
  weights: SearchWeights,
  limit: number,
): SearchHit[] {
  const byId = new Map<
    string,
    { memory: Scored['memory']; parts: Partial<Record<Signal, number>>; signals: SearchHit['signals'] }
  >();
  for (const [signal, list] of Object.entries(lists) as Array<[Signal, readonly Scored[]]>) {
    list.forEach((r, i) => {
      const e = byId.get(r.memory.id) ?? { memory: r.memory, parts: {}, signals: {} };
      e.parts[signal] = r.score;
      e.signals = { ...e.signals, [signal]: { rank: i + 1, score: r.score } };
      byId.set(r.memory.id, e);
    });
  }
  const entries = [...byId.values()];
  const bm25Max = Math.max(0, ...entries.map((e) => (e.parts.lexical ?? 0) + (e.parts.context ?? 0)));
  const vectors = lists.vector ?? [];
  const vMax = Math.max(...vectors.map((v) => v.score));
  const vMin = Math.min(...vectors.map((v) => v.score));
  const vSpan = vMax - vMin;
  const gMax = Math.max(0, ...(lists.graph ?? []).map((g) => g.score));
  const scored = entries.map((e) => {
    const bm25 =
      bm25Max > 0 ? (weights.lexical * (e.parts.lexical ?? 0) + weights.lexical * (e.parts.context ?? 0)) / bm25Max : 0;
    const v = e.parts.vector === undefined ? 0 : vSpan > 0 ? (e.parts.vector - vMin) / vSpan : 1;
    const g = gMax > 0 ? (e.parts.graph ?? 0) / gMax : 0;
    return { memory: e.memory, score: bm25 + weights.vector * v + weights.graph * g, signals: e.signals };
  });
  return scored.sort((a, b) => b.score - a.score || (a.memory.id < b.memory.id ? 1 : -1)).slice(0, limit);
}

/**
 * Lexical, vector and hybrid search over memories. Every hit says which
 * signals found it, with rank and score. Hybrid (the default) fuses BM25,
 * the vector signal and conversation context by score; a failing embedder
 * degrades it to the others and says so in `degraded`.
 */
export class SearchService {
  private readonly options: SearchOptions;

  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly system: SystemStore;
      readonly embedder: Embedder;
      readonly limits: SearchLimits;
      readonly options?: Partial<SearchOptions> | undefined;
      /** Optional cross-encoder over the fused candidates of hybrid search. */
      readonly reranker?: Reranker | undefined;
      readonly onEmbedError?: (e: unknown) => void;
    },
  ) {
    this.options = {
      weights: deps.options?.weights ?? defaultSearchWeights(deps.embedder.provider),
      neighbourWindowSeconds: deps.options?.neighbourWindowSeconds ?? DEFAULT_NEIGHBOUR_WINDOW_SECONDS,
      contextHits: deps.options?.contextHits ?? DEFAULT_CONTEXT_HITS,
      rerankCandidates: deps.options?.rerankCandidates ?? DEFAULT_RERANK_CANDIDATES,
    };
  }

  async search(ctx: RequestContext, req: SearchRequest): Promise<SearchResult> {
    const { query, limit } = checkSearchInput(req.query, req.limit, this.deps.limits);
    const mode = req.mode ?? 'hybrid';
    const degraded: Signal[] = [];
    const degradedReasons: Partial<Record<Signal, DegradedReason>> = {};
    const { embedder } = this.deps;
    const { weights } = this.options;

    const { vector, degraded: why } = await embedQueryOrDegrade(embedder, query, mode, this.deps.onEmbedError);
    if (why !== undefined) {
      degraded.push('vector');
      degradedReasons.vector = why;
    }
    const lexicalRanker = await this.deps.system.lexicalRanker();
    const candidates = mode === 'hybrid' ? Math.min(Math.max(limit * 4, 40), 200) : limit;
    const terms = queryTerms(query);
    const withContext = mode === 'hybrid' && weights.context > 0;

    // Each signal reads in its own short tenant transaction, so on a pool they
    // run side by side (hybrid latency ≈ the slowest signal, not the sum).
    const { tenantDb } = this.deps;
    const [lexical, vectorHits, graphHits] = await Promise.all([
      mode === 'vector'
        ? undefined
        : tenantDb.withTenant(ctx.orgId, async ({ memories }) => {
            const lexicalLimit = mode === 'hybrid' ? Math.max(candidates, HYBRID_LEXICAL_CANDIDATES) : candidates;
            const hits = await memories.searchLexical({ terms, limit: lexicalLimit, filter: req.filter });
            const neighbours =
              withContext && hits.length > 0
                ? await memories.findNeighbours({
                    ids: hits.slice(0, this.options.contextHits).map((h) => h.memory.id),
                    filter: req.filter,
                    windowSeconds: this.options.neighbourWindowSeconds,
                  })
                : [];
            return { hits, neighbours };
          }),
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
      mode === 'hybrid' && weights.graph > 0
        ? tenantDb.withTenant(ctx.orgId, (stores) => graphSignal(stores, query, terms, req.filter, candidates))
        : undefined,
    ]);
    const lists: Partial<Record<Signal, readonly RankedMemory[]>> = {};
    if (lexical !== undefined) lists.lexical = lexical.hits;
    if (vectorHits !== undefined) lists.vector = vectorHits;
    if (withContext && lexical !== undefined)
      lists.context = contextBoosts(lexical.hits, lexical.neighbours, weights.context);
    if (graphHits !== undefined && graphHits.length > 0) lists.graph = graphHits;

    let results: SearchHit[];
    if (mode === 'hybrid' && this.deps.reranker !== undefined) {
      const fused = fuseScores(lists, weights, Math.max(limit, this.options.rerankCandidates));
      const r = await rerank(this.deps.reranker, query, fused);
      if (r.degraded !== undefined) {
        degraded.push('rerank');
        degradedReasons.rerank = r.degraded;
      }
      results = r.hits.slice(0, limit);
    } else {
      results =
        mode === 'hybrid'
          ? fuseScores(lists, weights, limit)
          : (lists[mode] ?? []).slice(0, limit).map((r, i) => ({
              memory: r.memory,
              score: r.score,
              signals: { [mode]: { rank: i + 1, score: r.score } },
            }));
    }
    return { results, mode, degraded, degradedReasons, lexicalRanker, model: embedder.model };
  }
}

/**
 * Re-scores fused hits with the reranker: the final order and score are the
 * reranker's, each hit gains a `rerank` signal. If the reranker fails the
 * fused order stands and the reason is returned for `degradedReasons`.
 */
export async function rerank(
  reranker: Reranker,
  query: string,
  fused: readonly SearchHit[],
): Promise<{ hits: SearchHit[]; degraded?: DegradedReason }> {
  if (fused.length === 0) return { hits: [] };
  let scores: number[];
  try {
    scores = await reranker.rerank(
      query,
      fused.map((h) => h.memory.content),
    );
  } catch (e) {
    return { hits: [...fused], degraded: degradedReason(e, 'RERANKER_UNAVAILABLE', 'The reranking service failed') };
  }
  const order = fused
    .map((h, i) => ({ h, score: scores[i] ?? Number.NEGATIVE_INFINITY, i }))
    .sort((a, b) => b.score - a.score || a.i - b.i);
  return {
    hits: order.map((o, rank) => ({
      memory: o.h.memory,
      score: o.score,
      signals: { ...o.h.signals, rerank: { rank: rank + 1, score: o.score } },
    })),
  };
}

/** Entities of the query that lend their neighbours' names to the graph signal. */
const GRAPH_SEED_ENTITIES = 5;

/**
 * The graph signal: the knowledge-graph entities (in the search's scope) that
 * the query names, then the entities related to them, whose names the query
 * does not contain; memories that mention those names, ranked by BM25. It
 * answers "what does Alice's manager like" with a memory about Bob when the
 * graph says Bob manages Alice. Empty when the scope has no graph.
 */
async function graphSignal(
  stores: TenantStores,
  query: string,
  terms: readonly string[],
  filter: MemoryFilter | undefined,
  limit: number,
): Promise<RankedMemory[]> {
  const key = scopeKey(filter?.scope);
  const seeds = await stores.graph.searchCandidates(key, { text: query, terms, limit: GRAPH_SEED_ENTITIES });
  const ids = seeds.lexical.slice(0, GRAPH_SEED_ENTITIES).map((s) => s.id);
  if (ids.length === 0) return [];
  const nodes = await stores.graph.findNodes(key, { ids });
  const seedNames = new Set(nodes.entities.map((e) => e.name));
  const inQuery = new Set(terms);
  const related = new Set<string>();
  for (const r of nodes.relations) {
    for (const name of [r.from, r.to]) if (!seedNames.has(name)) related.add(name);
  }
  const expansion = queryTerms([...related].join(' ')).filter((t) => !inQuery.has(t));
  if (expansion.length === 0) return [];
  return stores.memories.searchLexical({ terms: expansion, limit, filter });
}
