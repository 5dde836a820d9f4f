/**
 * Re-scores search candidates against the query, as a cross-encoder does
 * (reads query and document together, which a bi-encoder's vectors cannot).
 * Optional and off by default: it costs a model call per search.
 */
export interface Reranker {
  readonly provider: 'http';
  readonly model: string;
  /** One relevance score per document, higher is better, in the documents' order. */
  rerank(query: string, documents: readonly string[]): Promise<number[]>;
}

/** Characters of each document sent to the reranker (cross-encoders read a few hundred tokens). */
export const RERANK_MAX_CHARS = 4_000;
