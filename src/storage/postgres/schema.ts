import type { ColumnType, Generated } from 'kysely';

/** Kysely's view of the schema in `migrations/`. Keep in step with the SQL. */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json = ColumnType<Record<string, unknown>, string, string>;

export interface OrgsTable {
  id: string;
  slug: string;
  name: string;
  region: ColumnType<string, string | undefined, string>;
  created_at: Timestamp;
}

/** int8 columns: node-postgres returns strings, PGlite may return numbers or bigints. */
type Int8 = ColumnType<string | number | bigint, number, number>;

export interface AuditLogTable {
  chain_id: string;
  seq: Int8;
  org_id: string | null;
  id: string;
  at: Timestamp;
  actor_type: string;
  actor_id: string | null;
  auth_method: string | null;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  outcome: string;
  status: number | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: Json;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadsTable {
  chain_id: string;
  org_id: string | null;
  seq: Int8;
  hash: string;
  updated_at: Timestamp;
}

export interface UsersTable {
  org_id: string;
  id: string;
  email: string;
  display_name: string | null;
  role: string;
  created_at: Timestamp;
}

export interface ProjectsTable {
  org_id: string;
  id: string;
  slug: string;
  name: string;
  created_at: Timestamp;
}

export interface ApiKeysTable {
  org_id: string;
  id: string;
  name: string;
  prefix: string;
  secret_hash: string;
  scopes: string[];
  created_at: Timestamp;
  expires_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
}

export interface MemoriesTable {
  org_id: string;
  id: string;
  scope_user: string | null;
  scope_agent: string | null;
  scope_project: string | null;
  scope_session: string | null;
  scope_key: string;
  content: string;
  content_hash: string;
  metadata: Json;
  tags: string[];
  source: string | null;
  version: Generated<number>;
  valid_from: NullableTimestamp;
  valid_to: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
  search_tsv: ColumnType<string, never, never>;
}

export interface MemoryHistoryTable {
  org_id: string;
  memory_id: string;
  version: number;
  scope_user: string | null;
  scope_agent: string | null;
  scope_project: string | null;
  scope_session: string | null;
  content: string;
  content_hash: string;
  metadata: Json;
  tags: string[];
  source: string | null;
  valid_from: NullableTimestamp;
  valid_to: NullableTimestamp;
  written_at: Timestamp;
  superseded_at: Timestamp;
}

export interface EmbeddingModelsTable {
  name: string;
  provider: string;
  dimension: number;
  created_at: Timestamp;
}

export interface MemoryEmbeddingsTable {
  org_id: string;
  memory_id: string;
  model: string;
  content_hash: string;
  embedding: string;
  created_at: Timestamp;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  checksum: string;
  applied_at: Timestamp;
}

export interface DB {
  orgs: OrgsTable;
  users: UsersTable;
  projects: ProjectsTable;
  api_keys: ApiKeysTable;
  memories: MemoriesTable;
  memory_history: MemoryHistoryTable;
  embedding_models: EmbeddingModelsTable;
  memory_embeddings: MemoryEmbeddingsTable;
  engram_migrations: SchemaMigrationsTable;
  audit_log: AuditLogTable;
  audit_heads: AuditHeadsTable;
}
