import type {
  Memory,
  MemoryFilter,
  MemoryPatch,
  MemoryScope,
  MemoryVersion,
  Page,
} from '../domain/memory/memory.types.ts';
import type { RankedMemory } from '../domain/search/search.types.ts';
import type { AuditEntry, AuditFilter, AuditHead } from '../domain/audit/audit.types.ts';
import type { Relation } from '../domain/graph/graph.types.ts';
import type { ApiKey, Org, Scope } from '../domain/tenancy/tenancy.types.ts';
import type { OrgQuotas } from '../domain/tenancy/quota.types.ts';
import type { JobStore } from './job-queue.ts';
import type { CodeStore } from './code-store.ts';
import type { CodeChunkStore } from './code-chunk-store.ts';

/**
 * The only door to tenant data. `withTenant(orgId, fn)` runs `fn` in one
 * transaction in which the database itself (Row-Level Security) limits every
 * read and write to that org; the stores handed to `fn` are bound to it and
 * die with it.
 */
export interface TenantDb {
  withTenant<T>(orgId: string, fn: (stores: TenantStores) => Promise<T>): Promise<T>;
}

export interface TenantStores {
  readonly memories: MemoryStore;
  readonly apiKeys: ApiKeyStore;
  readonly audit: AuditStore;
  readonly graph: GraphStore;
  readonly jobs: JobStore;
  readonly code: CodeStore;
  readonly codeChunks: CodeChunkStore;
}

/**
 * One hash chain of the audit log. `appendEntry` locks the chain's head,
 * hands it to `build` (which computes the new entry and its hash) and stores
 * entry and head together, so concurrent appends never fork the chain.
 */
export interface AuditChainStore {
  appendEntry(build: (head: AuditHead | undefined) => AuditEntry): Promise<AuditEntry>;
  findHead(): Promise<AuditHead | undefined>;
  /** Entries in seq order after `afterSeq`, for verification. */
  findChain(afterSeq: number, limit: number): Promise<AuditEntry[]>;
}

/** The caller org's audit chain. */
export interface AuditStore extends AuditChainStore {
  /** Newest first; `beforeSeq` is the cursor. */
  findEntries(filter: AuditFilter, limit: number, beforeSeq: number | null): Promise<AuditEntry[]>;
}

export interface MemoryRow {
  readonly id: string;
  readonly scope: MemoryScope;
  readonly scopeKey: string;
  readonly content: string;
  readonly contentHash: string;
  readonly metadata: Record<string, unknown>;
  readonly tags: readonly string[];
  readonly source: string | null;
  readonly validFrom: Date | null;
  readonly validTo: Date | null;
}

export interface EmbeddingRow {
  readonly memoryId: string;
  readonly model: string;
  readonly contentHash: string;
  readonly vector: Float32Array;
}

export interface VectorQuery {
  readonly vector: Float32Array;
  readonly model: string;
  readonly dimension: number;
  readonly limit: number;
  readonly filter?: MemoryFilter | undefined;
}

export interface LexicalQuery {
  readonly terms: readonly string[];
  readonly limit: number;
  readonly filter?: MemoryFilter | undefined;
}

/** The memories written just before and after each of `ids` in its scope. */
export interface NeighbourQuery {
  readonly ids: readonly string[];
  readonly filter?: MemoryFilter | undefined;
  /** Neighbours whose event time (validFrom, else createdAt) is further away are not neighbours. */
  readonly windowSeconds: number;
}

/** Storage of memories, their history and vectors, inside one org. */
export interface MemoryStore {
  /** Inserts unless the same content exists in the same scope; then returns that one. */
  insertMemory(row: MemoryRow): Promise<{ memory: Memory; created: boolean }>;
  /**
   * `insertMemory` for many rows in one multi-row statement: returns one
   * result per row, in order. Rows must not repeat a (scope, content) pair;
   * a pair that already exists returns the stored memory with `created: false`.
   */
  insertMemories(rows: readonly MemoryRow[]): Promise<Array<{ memory: Memory; created: boolean }>>;
  /** The memories with these ids that exist, in no particular order. */
  findMemoriesByIds(ids: readonly string[]): Promise<Memory[]>;
  findMemory(id: string): Promise<Memory | undefined>;
  findMemories(filter: MemoryFilter, limit: number, cursor: string | null): Promise<Page<Memory>>;
  /** Archives the current version and applies the patch; undefined when not found. */
  updateMemory(
    id: string,
    patch: MemoryPatch & { contentHash?: string; scopeKey?: string },
    expectedVersion?: number,
  ): Promise<Memory | undefined>;
  deleteMemory(id: string): Promise<boolean>;
  findHistory(id: string): Promise<MemoryVersion[] | undefined>;
  upsertEmbeddings(rows: readonly EmbeddingRow[]): Promise<void>;
  /**
   * Stores a vector only if its memory still has the content it was computed
   * from (`contentHash`), holding the memory row so a concurrent edit waits;
   * false when the memory was deleted or changed meanwhile.
   */
  upsertEmbeddingIfCurrent(row: EmbeddingRow): Promise<boolean>;
  /** `upsertEmbeddingIfCurrent` for many rows at once; returns how many were stored. */
  upsertEmbeddingsIfCurrent(rows: readonly EmbeddingRow[]): Promise<number>;
  /** Memories with no vector for `model`, or one computed from older content. */
  findMissingEmbeddings(
    model: string,
    limit: number,
  ): Promise<Array<{ id: string; content: string; contentHash: string }>>;
  /**
   * BM25 over the org's own statistics (IDF and length normalisation from
   * this org's memories only), best first; only memories matching a term.
   */
  searchLexical(q: LexicalQuery): Promise<RankedMemory[]>;
  searchVector(q: VectorQuery): Promise<RankedMemory[]>;
  /**
   * For each id, the previous and next memory of the same scope in write
   * order, if it passes the filter and lies within the time window: the
   * conversation around a hit.
   */
  findNeighbours(q: NeighbourQuery): Promise<Array<{ of: string; memory: Memory }>>;
}

/** A stored graph entity with its observations in insertion order. */
export interface GraphEntityRecord {
  readonly id: string;
  readonly name: string;
  readonly entityType: string;
  readonly observations: string[];
}

export interface NewGraphEntity {
  /** UUIDv7: entities are listed in id order, i.e. in creation order. */
  readonly id: string;
  readonly name: string;
  readonly entityType: string;
  /** Already deduplicated, in order. */
  readonly observations: readonly string[];
}

/** An entity whose vector is missing or stale, with the text it is computed from. */
export interface GraphEmbeddingTask extends GraphEntityRecord {
  /** The content revision the text belongs to. */
  readonly revision: number;
}

export interface GraphEmbeddingRow {
  readonly id: string;
  readonly revision: number;
  readonly model: string;
  readonly vector: Float32Array;
}

export interface GraphRelationIds {
  readonly fromId: string;
  readonly toId: string;
  readonly relationType: string;
}

/** A candidate from one search signal: higher score is better. */
export interface RankedEntityId {
  readonly id: string;
  readonly score: number;
}

/**
 * The knowledge graph inside one org. Every method but `insertEntities` works
 * in one scope, named by its canonical `scopeKey`. Names are matched exactly.
 *
 * Concurrency contract: inserts skip what exists (never fail on a duplicate,
 * never lose a concurrent write) and rows are locked in id order, so
 * concurrent transactions wait for each other instead of deadlocking.
 */
export interface GraphStore {
  /**
   * Inserts the entities whose name is new in the scope, with their
   * observations, and queues them for embedding; returns the ids created.
   */
  insertEntities(scope: MemoryScope, scopeKey: string, rows: readonly NewGraphEntity[]): Promise<string[]>;
  /**
   * Finds the named entities and locks them until the transaction ends, so
   * they cannot be deleted and their observations and outgoing relations
   * change in one transaction at a time. Before writing observations or
   * relations, lock every entity involved in this one call.
   */
  lockEntities(scopeKey: string, names: readonly string[]): Promise<Array<{ id: string; name: string }>>;
  /**
   * Adds observations an entity does not have yet (in the given order), bumps
   * the revision of the entities that changed and queues them for embedding.
   * Returns what was added.
   */
  insertObservations(
    scopeKey: string,
    rows: ReadonlyArray<{ entityId: string; content: string }>,
  ): Promise<Array<{ entityId: string; content: string }>>;
  /** Deletes observations, bumps the revision of the entities that changed and queues them; returns their ids. */
  deleteObservations(rows: ReadonlyArray<{ entityId: string; content: string }>): Promise<string[]>;
  /** Deletes the named entities (with their observations and relations); returns how many. */
  deleteEntities(scopeKey: string, names: readonly string[]): Promise<number>;
  /** Inserts relations not present yet; returns those inserted. */
  insertRelations(scopeKey: string, rows: readonly GraphRelationIds[]): Promise<GraphRelationIds[]>;
  /** Deletes relations given by endpoint names; returns how many. */
  deleteRelations(scopeKey: string, rows: readonly Relation[]): Promise<number>;
  /**
   * Entities by name or id, in id order, with the relations that have at
   * least one end among them (by endpoint names, in creation order): what
   * open_nodes and search_nodes answer.
   */
  findNodes(
    scopeKey: string,
    by: { names: readonly string[] } | { ids: readonly string[] },
  ): Promise<{ entities: GraphEntityRecord[]; relations: Relation[] }>;
  /** Up to `limit` entities after `afterId`, in id order. */
  findEntityPage(scopeKey: string, limit: number, afterId: string | null): Promise<GraphEntityRecord[]>;
  /** Relations whose source is one of `ids`, by endpoint names, in creation order. */
  findRelationsFrom(ids: readonly string[]): Promise<Relation[]>;
  /**
   * The two search signals' candidates, best first. `lexical`: entities
   * matching the text as a case-insensitive substring of name, type or an
   * observation, or any of the full-text terms; substring matches first, then
   * by full-text rank. Candidates come from indexes, at most about `limit` per
   * way of matching (substring, each term), so the work does not grow with
   * the graph; when more than that match one way, which of them are ranked is
   * up to the index. `vector` (when a query vector is given): the `limit`
   * nearest entities by cosine similarity (score = 1 − cosine distance) among
   * vectors of `model`, through the model's HNSW index, exactly when the index
   * yields fewer; entities without such a vector are not candidates.
   */
  searchCandidates(
    scopeKey: string,
    q: {
      text: string;
      terms: readonly string[];
      limit: number;
      vector?: { vector: Float32Array; model: string; limit: number } | undefined;
    },
  ): Promise<{ lexical: RankedEntityId[]; vector: RankedEntityId[] }>;
  /**
   * Up to `limit` entities of the org, in id order, whose vector is missing,
   * older than their text (every write that creates or changes an entity
   * queues it), or of another model than `model`, with the text to embed.
   * Found by key: cheap when there are none.
   */
  findStaleEmbeddings(model: string, limit: number): Promise<GraphEmbeddingTask[]>;
  /**
   * Stores vectors, each only if its entity is still at that revision (and
   * then takes the entity off the queue); returns how many.
   */
  updateEmbeddings(rows: readonly GraphEmbeddingRow[]): Promise<number>;
}

export interface ApiKeyStore {
  insertKey(row: {
    id: string;
    name: string;
    prefix: string;
    secretHash: string;
    scopes: readonly Scope[];
    expiresAt: Date | null;
  }): Promise<ApiKey>;
  findKeys(): Promise<ApiKey[]>;
  revokeKey(id: string): Promise<ApiKey | undefined>;
  touchKey(id: string): Promise<void>;
}

/** A key as found by prefix, before its org is known (for authentication). */
export interface ApiKeyCredential {
  readonly orgId: string;
  readonly id: string;
  readonly secretHash: string;
  readonly scopes: readonly string[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

/**
 * Work that is not inside one org: bootstrap, authentication lookup, model
 * registry, and listing orgs for background jobs.
 */
export interface SystemStore {
  findOrgBySlug(slug: string): Promise<Org | undefined>;
  findOrgById(id: string): Promise<Org | undefined>;
  findOrgs(): Promise<Org[]>;
  insertOrg(org: { id: string; slug: string; name: string; region: string }): Promise<Org>;
  updateOrgRegion(slug: string, region: string): Promise<Org | undefined>;
  /** The chain of events with no org (failed authentication with unknown credentials). */
  systemAuditChain(): AuditChainStore;
  /** Runs `fn` on any org's chain, across RLS (for `engram audit verify`). */
  withAuditChain<T>(chainId: string, fn: (chain: AuditChainStore) => Promise<T>): Promise<T>;
  /** Every chain id that has entries or a head. */
  findAuditChainIds(): Promise<Array<{ chainId: string; orgId: string | null }>>;
  findOrgIds(): Promise<string[]>;
  /**
   * Where other orgs' repositories on this server's disk live: the location
   * of every `path` repo and `file:` URL repo of any org but `exceptOrgId`
   * (across RLS: a registration must not take a directory another org holds).
   */
  findLocalRepoLocations(exceptOrgId: string): Promise<string[]>;
  findApiKeyByPrefix(prefix: string): Promise<ApiKeyCredential | undefined>;
  /** An org's rate-limit overrides; undefined when it has none. */
  findOrgQuotas(orgId: string): Promise<OrgQuotas | undefined>;
  /** Replaces an org's rate-limit overrides (every class; null: the default). */
  upsertOrgQuotas(orgId: string, quotas: OrgQuotas): Promise<OrgQuotas>;
  /** Registers a model and makes sure its vector index exists; throws on a dimension mismatch. */
  registerEmbeddingModel(model: { name: string; provider: string; dimension: number }): Promise<void>;
  lexicalRanker(): Promise<'bm25' | 'ts_rank_cd'>;
  /**
   * Refreshes planner statistics when the memories table changed by more than
   * autovacuum's threshold (or always, with `force`). The embedded store has no
   * autovacuum; without statistics the planner misjudges the org filter.
   * Returns whether it analyzed.
   */
  analyze(force?: boolean): Promise<boolean>;
  /**
   * Refreshes planner statistics of the knowledge graph tables that changed
   * by more than autovacuum's threshold (50 rows + 10 %) since they were last
   * analyzed. The graph calls it as it grows: on a table without statistics
   * the planner takes a scope for one row and scans it for every lookup (see
   * migration 0018). Returns whether it analyzed.
   */
  analyzeGraph(): Promise<boolean>;
  /**
   * Refreshes planner statistics of the code graph tables. The indexer calls
   * it after writing many rows: resolution joins planned on a freshly filled
   * table without statistics run for minutes instead of milliseconds.
   */
  analyzeCodeGraph(): Promise<void>;
  /**
   * Refreshes planner statistics of the code search tables. The chunk job
   * calls it after writing many chunks: without them the planner took the
   * org filter for a selective one and ranked every chunk instead of reading
   * the top hits off the BM25 index (580 ms instead of 1 ms at 5,900 chunks).
   */
  analyzeCodeChunks(): Promise<void>;
  /**
   * The embedded store's stand-in for autovacuum, which it lacks: runs
   * `VACUUM` on each table (all of Engram's, or those named) whose dead rows
   * exceed autovacuum's default threshold, 50 + 20 % of its live rows
   * (planner statistics are refreshed separately). Without it, every row a re-index or a delete replaces stays in the
   * table and its indexes for good, and scans slow down run after run.
   * Returns the tables vacuumed.
   */
  vacuum(tables?: readonly string[]): Promise<string[]>;
}
