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
import type { ApiKey, Org, Scope } from '../domain/tenancy/tenancy.types.ts';

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

/** Storage of memories, their history and vectors, inside one org. */
export interface MemoryStore {
  /** Inserts unless the same content exists in the same scope; then returns that one. */
  insertMemory(row: MemoryRow): Promise<{ memory: Memory; created: boolean }>;
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
  /** Memories with no vector for `model`, or one computed from older content. */
  findMissingEmbeddings(
    model: string,
    limit: number,
  ): Promise<Array<{ id: string; content: string; contentHash: string }>>;
  searchLexical(q: LexicalQuery): Promise<RankedMemory[]>;
  searchVector(q: VectorQuery): Promise<RankedMemory[]>;
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
  findApiKeyByPrefix(prefix: string): Promise<ApiKeyCredential | undefined>;
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
}
