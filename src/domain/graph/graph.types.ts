import type { MemoryScope } from '../memory/memory.types.ts';
import type { Signal } from '../search/search.types.ts';

/*
 * The knowledge graph of the official MCP memory server
 * (@modelcontextprotocol/server-memory), with the same shapes: entities have a
 * unique name, a type and a list of observations; relations are directed and
 * typed, in active voice. Names are matched exactly (case-sensitive).
 */

export interface EntityInput {
  readonly name: string;
  readonly entityType: string;
  readonly observations: readonly string[];
}

export interface Entity {
  name: string;
  entityType: string;
  observations: string[];
}

export interface Relation {
  from: string;
  to: string;
  relationType: string;
}

export interface Graph {
  entities: Entity[];
  relations: Relation[];
}

export interface ObservationAddition {
  readonly entityName: string;
  readonly contents: readonly string[];
}

export interface AddedObservations {
  entityName: string;
  /** The contents the entity did not have yet. */
  addedObservations: string[];
}

export interface ObservationDeletion {
  readonly entityName: string;
  readonly observations: readonly string[];
}

export interface GraphPage extends Graph {
  /** Opaque cursor for the next page; null at the end. */
  nextCursor: string | null;
}

export interface GraphSearchResult extends Graph {
  /** Signals that could not answer (the embedder is down): the result comes from the others. */
  degraded: Signal[];
}

export interface ReadGraphOptions {
  readonly scope?: MemoryScope | undefined;
  readonly limit: number;
  readonly cursor: string | null;
}

export interface SearchNodesOptions {
  readonly scope?: MemoryScope | undefined;
  readonly limit: number;
}

export interface GraphLimits {
  /** Items per call: entities, relations, observation groups, names, and contents per group. */
  readonly maxItems: number;
  readonly nameChars: number;
  /** Entity and relation types. */
  readonly typeChars: number;
  readonly observationChars: number;
  readonly queryChars: number;
  /** Largest read_graph page; larger limits are capped. */
  readonly pageLimit: number;
  /** Most search_nodes results; larger limits are capped. */
  readonly searchLimit: number;
  /**
   * Smallest cosine similarity for a vector match to count. Without it every
   * entity is somebody's nearest neighbour and any query returns the whole
   * graph. Model-dependent. With the builtin embedder (384 dimensions) about
   * 0.2 % of unrelated entities pass 0.3 by hash collisions, and a misspelt
   * word reaches 0.3 only against a short entity: it finds typos, not meaning.
   */
  readonly minSimilarity: number;
}

export const DEFAULT_GRAPH_LIMITS: GraphLimits = Object.freeze({
  maxItems: 100,
  nameChars: 200,
  typeChars: 100,
  observationChars: 10_000,
  queryChars: 2_000,
  pageLimit: 500,
  searchLimit: 100,
  minSimilarity: 0.3,
});
