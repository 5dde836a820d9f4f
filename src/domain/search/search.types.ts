import type { Memory, MemoryFilter } from '../memory/memory.types.ts';

export type SearchMode = 'lexical' | 'vector' | 'hybrid';
/**
 * What found a hit: BM25 (`lexical`), the embedder (`vector`), or being the
 * turn next to a lexical hit in the same conversation (`context`), naming an
 * entity the knowledge graph relates to one the query names (`graph`), and
 * the optional reranker's verdict on the fused candidates (`rerank`).
 */
export type Signal = 'lexical' | 'vector' | 'context' | 'graph' | 'rerank';

export interface SearchRequest {
  readonly query: string;
  readonly mode?: SearchMode | undefined;
  readonly limit?: number | undefined;
  readonly filter?: MemoryFilter | undefined;
}

/** How one signal ranked a hit: its 1-based rank and its raw score (higher is better). */
export interface SignalScore {
  readonly rank: number;
  readonly score: number;
}

export interface SearchHit {
  readonly memory: Memory;
  /** Final score: the signal's score for single-signal modes, the fused score (0 to about 1 + weights) for hybrid. */
  readonly score: number;
  readonly signals: Partial<Record<Signal, SignalScore>>;
}

export interface DegradedReason {
  readonly code: string;
  readonly message: string;
}

export interface SearchResult {
  readonly results: readonly SearchHit[];
  readonly mode: SearchMode;
  /** Signals that were wanted but could not answer (e.g. the embedder is down). */
  readonly degraded: readonly Signal[];
  /** Why each degraded signal is missing: an error code and a message safe to show. */
  readonly degradedReasons: Partial<Record<Signal, DegradedReason>>;
  /** Always `bm25` for memories since migration 0017 (kept for clients that read it). */
  readonly lexicalRanker: 'bm25' | 'ts_rank_cd';
  readonly model: string;
}

/** A ranked candidate from one signal, before fusion. */
export interface RankedMemory {
  readonly memory: Memory;
  readonly score: number;
}
