import type { CodeLanguage } from './code-parser.ts';
import type { ChunkDraft, ChunkSymbol } from '../domain/code/code-chunks.ts';
import type { CodeSearchFilter, RankedChunk } from '../domain/code/code-search.types.ts';

/** A file whose chunks are missing or were cut from other content (or from symbols since replaced). */
export interface StaleChunkFile {
  readonly id: string;
  readonly path: string;
  readonly language: CodeLanguage;
  readonly contentHash: string;
}

export interface ChunkEmbeddingRow {
  readonly chunkId: string;
  readonly model: string;
  readonly contentHash: string;
  readonly vector: Float32Array;
}

/** A chunk next to a seed chunk's symbol in the code graph. */
export interface NeighbourChunk extends RankedChunk {
  /** The seed's symbol. */
  readonly seedSymbolId: string;
  /** `CALLS` / `REFERENCES` from the seed; suffixed `_BY` when the neighbour is the source. */
  readonly edge: string;
}

/**
 * An org's code search chunks (handed out by `withTenant`): written per file,
 * found by lexical (identifier tokens) and vector (per model) search, and by
 * the code graph's CALLS / REFERENCES edges between their symbols.
 */
export interface CodeChunkStore {
  /** Files of the repository in path order after `afterPath` whose chunks are stale or missing. */
  findStaleFiles(repoId: string, afterPath: string, limit: number): Promise<StaleChunkFile[]>;
  /** The symbols of these files, by file id. */
  findFileSymbols(fileIds: readonly string[]): Promise<Map<string, ChunkSymbol[]>>;
  /**
   * Replaces a file's chunks when the file still has `fileHash` (else does
   * nothing and answers false). Vectors of chunks whose text did not change
   * are kept.
   */
  replaceFileChunks(repoId: string, file: StaleChunkFile, chunks: readonly ChunkDraft[]): Promise<boolean>;
  /**
   * Chunks of the repository without a current vector of `model`, in id
   * order, after `afterId` when given (so that a run reads each once).
   */
  findMissingEmbeddings(
    repoId: string,
    model: string,
    limit: number,
    afterId?: string,
  ): Promise<Array<{ id: string; text: string; contentHash: string }>>;
  /** Stores vectors for chunks whose text is still `contentHash` (others are skipped). */
  upsertEmbeddings(rows: readonly ChunkEmbeddingRow[]): Promise<void>;

  searchLexical(q: {
    terms: readonly string[];
    limit: number;
    filter?: CodeSearchFilter | undefined;
  }): Promise<RankedChunk[]>;
  searchVector(q: {
    vector: Float32Array;
    model: string;
    dimension: number;
    limit: number;
    filter?: CodeSearchFilter | undefined;
  }): Promise<RankedChunk[]>;
  /** Chunks (first parts) of the symbols linked to these symbols by resolved CALLS / REFERENCES edges. */
  findNeighbours(symbolIds: readonly string[], limit: number, filter?: CodeSearchFilter): Promise<NeighbourChunk[]>;
  /** Whether lexical search ranks with BM25 (pg_textsearch) or ts_rank_cd. */
  lexicalRanker(): Promise<'bm25' | 'ts_rank_cd'>;
}
