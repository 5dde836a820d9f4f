import { errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import type { DegradedReason, SearchMode } from '../search/search.types.ts';
import { checkSearchInput, embedQueryOrDegrade, fuseRanked, type SearchLimits } from '../search/search.service.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import { codeQueryTerms } from './code-chunks.ts';
import type {
  CodeChunk,
  CodeSearchHit,
  CodeSearchRequest,
  CodeSearchResult,
  CodeSignal,
  RankedChunk,
} from './code-search.types.ts';

export type CodeSearchLimits = SearchLimits;

/** Fused hits whose graph neighbours are added. */
const GRAPH_SEEDS = 5;
/** Neighbours read per search. */
const GRAPH_NEIGHBOURS = 50;
/** A neighbour counts this much of a hit a search signal found at the same rank. */
const GRAPH_WEIGHT = 0.5;
const MAX_FILTER_ITEMS = 50;

/**
 * The mode of a search that names none: hybrid, unless the embedder is the
 * builtin hashing one. Its vectors measure surface overlap, not meaning, and
 * fused with lexical they made results worse than lexical alone (MRR@10 0.36
 * against 0.55 on the docstring benchmark; 0.41 with the vector at half
 * weight and no graph), so those searches are lexical.
 */
export const defaultCodeSearchMode = (embedder: Pick<Embedder, 'provider'>): SearchMode =>
  embedder.provider === 'builtin' ? 'lexical' : 'hybrid';

/**
 * Code search over the org's chunks: lexical (identifier-aware tokens, BM25
 * or ts_rank_cd), vector (the configured embedder, HNSW) and, in hybrid mode,
 * graph expansion — the callees, callers and referenced symbols of the
 * strongest fused hits join as a third list at half weight — all fused by
 * reciprocal rank. Filters: repositories, languages, path globs. A failing
 * embedder degrades hybrid search to lexical + graph and says so.
 */
export class CodeSearchService {
  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly embedder: Embedder;
      readonly limits: CodeSearchLimits;
      readonly onEmbedError?: (e: unknown) => void;
    },
  ) {}

  async search(ctx: RequestContext, req: CodeSearchRequest): Promise<CodeSearchResult> {
    const { query, limit } = checkSearchInput(req.query, req.limit, this.deps.limits);
    const f = req.filter;
    for (const [field, list] of [
      ['repos', f?.repoIds],
      ['languages', f?.languages],
      ['paths', f?.paths],
    ] as const) {
      if (list !== undefined && list.length > MAX_FILTER_ITEMS) {
        throw errors.validation(`${field} takes at most ${MAX_FILTER_ITEMS} items`, { field });
      }
    }
    const mode = req.mode ?? defaultCodeSearchMode(this.deps.embedder);
    const degraded: CodeSignal[] = [];
    const degradedReasons: Partial<Record<CodeSignal, DegradedReason>> = {};
    const { embedder, tenantDb } = this.deps;

    const { vector, degraded: why } = await embedQueryOrDegrade(embedder, query, mode, this.deps.onEmbedError);
    if (why !== undefined) {
      degraded.push('vector');
      degradedReasons.vector = why;
    }
    const candidates = mode === 'hybrid' ? Math.min(Math.max(limit * 4, 40), 200) : limit;
    const terms = codeQueryTerms(query);

    // Each signal reads in its own short tenant transaction (side by side on a pool).
    const [lexical, vectorHits, lexicalRanker] = await Promise.all([
      mode === 'vector'
        ? undefined
        : tenantDb.withTenant(ctx.orgId, ({ codeChunks }) =>
            codeChunks.searchLexical({ terms, limit: candidates, filter: f }),
          ),
      vector === undefined
        ? undefined
        : tenantDb.withTenant(ctx.orgId, ({ codeChunks }) =>
            codeChunks.searchVector({
              vector,
              model: embedder.model,
              dimension: embedder.dimension,
              limit: candidates,
              filter: f,
            }),
          ),
      tenantDb.withTenant(ctx.orgId, ({ codeChunks }) => codeChunks.lexicalRanker()),
    ]);
    const base = { mode, degraded, degradedReasons, lexicalRanker, model: embedder.model };

    if (mode !== 'hybrid') {
      const list = (mode === 'lexical' ? lexical : vectorHits) ?? [];
      const results = list.slice(0, limit).map((r, i) => ({
        chunk: r.chunk,
        score: r.score,
        signals: { [mode]: { rank: i + 1, score: r.score } },
      }));
      return { ...base, results };
    }

    const lists: Partial<Record<CodeSignal, Array<{ item: CodeChunk; score: number }>>> = {};
    const asItems = (l: readonly RankedChunk[]) => l.map((r) => ({ item: r.chunk, score: r.score }));
    if (lexical !== undefined) lists.lexical = asItems(lexical);
    if (vectorHits !== undefined) lists.vector = asItems(vectorHits);
    const first = fuseRanked(lists, (c) => c.id, candidates);

    // Graph expansion: neighbours of the strongest hits, ordered by the seed's
    // rank, then the edge's confidence; scored by the seed's fused score × confidence.
    const seeds = first.filter((h) => h.item.symbolId !== null).slice(0, GRAPH_SEEDS);
    const via = new Map<string, NonNullable<CodeSearchHit['via']>>();
    if (seeds.length > 0) {
      const neighbours = await tenantDb.withTenant(ctx.orgId, ({ codeChunks }) =>
        codeChunks.findNeighbours(
          seeds.map((s) => s.item.symbolId as string),
          GRAPH_NEIGHBOURS,
          f,
        ),
      );
      const seedRank = new Map(seeds.map((s, i) => [s.item.symbolId as string, i]));
      const graph = neighbours
        .map((n) => {
          const i = seedRank.get(n.seedSymbolId) ?? seeds.length;
          return { n, seed: seeds[i], order: i };
        })
        .sort((a, b) => a.order - b.order || b.n.score - a.n.score);
      lists.graph = graph.map(({ n, seed }) => {
        if (seed !== undefined && !via.has(n.chunk.id)) {
          via.set(n.chunk.id, { chunkId: seed.item.id, name: seed.item.qualifiedName ?? seed.item.name, edge: n.edge });
        }
        return { item: n.chunk, score: (seed?.score ?? 0) * n.score };
      });
    }
    const results: CodeSearchHit[] = fuseRanked(lists, (c) => c.id, limit, { graph: GRAPH_WEIGHT }).map((h) => ({
      chunk: h.item,
      score: h.score,
      signals: h.signals,
      ...(h.signals.graph !== undefined && via.has(h.item.id) ? { via: via.get(h.item.id) } : {}),
    }));
    return { ...base, results };
  }
}
