import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';
import type { DegradedReason, SearchMode, SignalScore } from '../search/search.types.ts';

/** The signals of code search: graph expansion adds neighbours (callees, callers) of strong hits. */
export type CodeSignal = 'lexical' | 'vector' | 'graph';

/** A searchable piece of source: one symbol (or part of a large one), or a window of a file without symbols. */
export interface CodeChunk {
  readonly id: string;
  readonly repoId: string;
  readonly repoName: string;
  readonly fileId: string;
  readonly path: string;
  readonly language: CodeLanguage;
  readonly kind: SymbolKind | 'block';
  readonly name: string;
  readonly qualifiedName: string | null;
  readonly symbolId: string | null;
  readonly part: number;
  /** One-based, inclusive. */
  readonly startLine: number;
  readonly endLine: number;
  readonly doc: string | null;
  readonly content: string;
}

/** Which chunks a search may return; each list is "any of", lists combine with "and". */
export interface CodeSearchFilter {
  readonly repoIds?: readonly string[] | undefined;
  readonly languages?: readonly CodeLanguage[] | undefined;
  /** Globs over repository paths: `*` within a segment, `**` across, `?` one character; no `/`: any directory. */
  readonly paths?: readonly string[] | undefined;
}

export interface CodeSearchRequest {
  readonly query: string;
  readonly mode?: SearchMode | undefined;
  readonly limit?: number | undefined;
  readonly filter?: CodeSearchFilter | undefined;
}

/** A candidate from one signal, before fusion. */
export interface RankedChunk {
  readonly chunk: CodeChunk;
  readonly score: number;
}

export interface CodeSearchHit {
  readonly chunk: CodeChunk;
  /** The signal's score for single-signal modes, the (weighted) RRF sum for hybrid. */
  readonly score: number;
  readonly signals: Partial<Record<CodeSignal, SignalScore>>;
  /** For hits the graph found: the hit it neighbours and how (`CALLS`, `REFERENCES`; `callers` when reversed). */
  readonly via?: { readonly chunkId: string; readonly name: string; readonly edge: string } | undefined;
}

export interface CodeSearchResult {
  readonly results: readonly CodeSearchHit[];
  readonly mode: SearchMode;
  readonly degraded: readonly CodeSignal[];
  readonly degradedReasons: Partial<Record<CodeSignal, DegradedReason>>;
  readonly lexicalRanker: 'bm25' | 'ts_rank_cd';
  readonly model: string;
}

/** Payload of an `index_code_chunks` job: (re)chunk and embed a repository's changed files. */
export const INDEX_CODE_CHUNKS = 'index_code_chunks';
export interface IndexCodeChunksPayload {
  readonly repoId: string;
}
