import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import type { Memory, MemoryFilter, MemoryPatch, MemoryVersion, Page } from '../../domain/memory/memory.types.ts';
import type { RankedMemory } from '../../domain/search/search.types.ts';
import type { ApiKey, Org, Scope } from '../../domain/tenancy/tenancy.types.ts';
import type { OrgQuotas } from '../../domain/tenancy/quota.types.ts';
import { errors } from '../../errors.ts';
import type {
  ApiKeyCredential,
  ApiKeyStore,
  AuditChainStore,
  EmbeddingRow,
  LexicalQuery,
  MemoryRow,
  NeighbourQuery,
  MemoryStore,
  SystemStore,
  TenantDb,
  TenantStores,
  VectorQuery,
} from '../../ports/tenant-db.ts';
import { SYSTEM_CHAIN, type AuditEntry, type AuditHead } from '../../domain/audit/audit.types.ts';
import { PgAuditStore } from './audit-store.pg.ts';
import { PgGraphStore } from './graph-store.pg.ts';
import { PgCodeStore } from './code-store.pg.ts';
import { PgCodeChunkStore } from './code-chunk-store.pg.ts';
import { PgJobStore } from './job-queue.pg.ts';
import { guard } from './pg-errors.ts';
import type { ApiKeysTable, DB, MemoriesTable, OrgQuotasTable, OrgsTable } from './schema.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID_RE.test(s);

/**
 * `withTenant` on Postgres: one transaction, switched to the non-owner role
 * `engram_app`, with `app.current_org_id` set for that transaction only. RLS
 * policies read that setting, so even a query that forgot its org filter
 * cannot see another org's rows.
 */
export class PgTenantDb implements TenantDb {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly opts: { canActAsSystem: boolean },
  ) {}

  async withTenant<T>(orgId: string, fn: (stores: TenantStores) => Promise<T>): Promise<T> {
    if (!isUuid(orgId)) throw errors.validation('org id must be a UUID');
    return guard(() =>
      this.db.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${orgId}, true)`.execute(
          tx,
        );
        return fn({
          memories: new PgMemoryStore(tx, orgId, this.opts.canActAsSystem),
          apiKeys: new PgApiKeyStore(tx, orgId),
          audit: new PgAuditStore(tx, orgId, orgId),
          graph: new PgGraphStore(tx, orgId, this.opts.canActAsSystem),
          jobs: new PgJobStore(tx, orgId),
          code: new PgCodeStore(tx, orgId),
          codeChunks: new PgCodeChunkStore(tx, orgId, this.opts.canActAsSystem),
        });
      }),
    );
  }
}

const MEMORY_COLUMNS = [
  'id',
  'scope_user',
  'scope_agent',
  'scope_project',
  'scope_session',
  'content',
  'content_hash',
  'metadata',
  'tags',
  'source',
  'version',
  'valid_from',
  'valid_to',
  'created_at',
  'updated_at',
] as const;
const MEMORY_COLUMNS_SQL = sql.raw(MEMORY_COLUMNS.map((c) => `m.${c}`).join(', '));

type MemoryRecord = Pick<Selectable<MemoriesTable>, (typeof MEMORY_COLUMNS)[number]>;

function toMemory(r: MemoryRecord): Memory {
  const scope: Record<string, string> = {};
  if (r.scope_user !== null) scope.user = r.scope_user;
  if (r.scope_agent !== null) scope.agent = r.scope_agent;
  if (r.scope_project !== null) scope.project = r.scope_project;
  if (r.scope_session !== null) scope.session = r.scope_session;
  return {
    id: r.id,
    scope,
    content: r.content,
    contentHash: r.content_hash,
    metadata: r.metadata,
    tags: r.tags,
    source: r.source,
    version: r.version,
    validFrom: r.valid_from,
    validTo: r.valid_to,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export const vectorLiteral = (v: Float32Array): string => `[${Array.from(v).join(',')}]`;

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isUuid(id)) throw errors.validation('cursor is not valid', { field: 'cursor' });
  return id;
}

/** SQL conditions for a filter over alias `m`, always including the org. */
function filterSql(orgId: string, f: MemoryFilter | undefined): RawBuilder<unknown> {
  const parts: RawBuilder<unknown>[] = [sql`m.org_id = ${orgId}`];
  const s = f?.scope;
  if (s?.user !== undefined) parts.push(sql`m.scope_user = ${s.user}`);
  if (s?.agent !== undefined) parts.push(sql`m.scope_agent = ${s.agent}`);
  if (s?.project !== undefined) parts.push(sql`m.scope_project = ${s.project}`);
  if (s?.session !== undefined) parts.push(sql`m.scope_session = ${s.session}`);
  if (f?.tags !== undefined && f.tags.length > 0) parts.push(sql`m.tags @> ${[...f.tags]}::text[]`);
  if (f?.metadata !== undefined) parts.push(sql`m.metadata @> ${JSON.stringify(f.metadata)}::jsonb`);
  if (f?.createdAfter !== undefined) parts.push(sql`m.created_at >= ${f.createdAfter}`);
  if (f?.createdBefore !== undefined) parts.push(sql`m.created_at < ${f.createdBefore}`);
  if (f?.validAt !== undefined) {
    parts.push(
      sql`(m.valid_from IS NULL OR m.valid_from <= ${f.validAt}) AND (m.valid_to IS NULL OR m.valid_to > ${f.validAt})`,
    );
  }
  return sql.join(parts, sql` AND `);
}

export class PgMemoryStore implements MemoryStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
    private readonly canActAsSystem: boolean,
  ) {}

  /**
   * Runs a candidate query (ids and scores) as engram_system. Under RLS, Postgres will
   * not use a non-leakproof operator (`@@`, `@>`) as an index condition, so
   * full-text candidates would be a sequential scan; engram_system's policy is
   * `true`, so its plans use the GIN index. The query filters by org itself
   * (filterSql always does), and the rows are then read back as engram_app,
   * under RLS: every row returned still passes the tenant policy.
   */
  private async candidates<R>(query: RawBuilder<R>): Promise<R[]> {
    if (!this.canActAsSystem) return (await query.execute(this.tx)).rows;
    await sql`SELECT set_config('role', 'engram_system', true)`.execute(this.tx);
    try {
      return (await query.execute(this.tx)).rows;
    } finally {
      // If the query failed, the transaction is aborted and runs nothing more
      // (not even as engram_system); let the original error through.
      await sql`SELECT set_config('role', 'engram_app', true)`.execute(this.tx).catch(() => undefined);
    }
  }

  /** The `memories` row of a new memory, for single and batch inserts. */
  private memoryValues(row: MemoryRow) {
    return {
      org_id: this.orgId,
      id: row.id,
      scope_user: row.scope.user ?? null,
      scope_agent: row.scope.agent ?? null,
      scope_project: row.scope.project ?? null,
      scope_session: row.scope.session ?? null,
      scope_key: row.scopeKey,
      content: row.content,
      content_hash: row.contentHash,
      metadata: JSON.stringify(row.metadata),
      tags: [...row.tags],
      source: row.source,
      valid_from: row.validFrom,
      valid_to: row.validTo,
    };
  }

  async insertMemory(row: MemoryRow): Promise<{ memory: Memory; created: boolean }> {
    const inserted = await this.tx
      .insertInto('memories')
      .values(this.memoryValues(row))
      .onConflict((oc) => oc.columns(['org_id', 'scope_key', 'content_hash']).doNothing())
      .returning(MEMORY_COLUMNS)
      .executeTakeFirst();
    if (inserted !== undefined) return { memory: toMemory(inserted), created: true };
    const existing = await this.tx
      .selectFrom('memories')
      .select(MEMORY_COLUMNS)
      .where('org_id', '=', this.orgId)
      .where('scope_key', '=', row.scopeKey)
      .where('content_hash', '=', row.contentHash)
      .executeTakeFirstOrThrow();
    return { memory: toMemory(existing), created: false };
  }

  async insertMemories(rows: readonly MemoryRow[]): Promise<Array<{ memory: Memory; created: boolean }>> {
    if (rows.length === 0) return [];
    const keyOf = (scopeKey: string, contentHash: string) => `${contentHash}:${scopeKey}`;
    // One statement for the whole batch; conflicts (content already stored in
    // that scope) are skipped here and read back below.
    const inserted = await this.tx
      .insertInto('memories')
      .values(rows.map((row) => this.memoryValues(row)))
      .onConflict((oc) => oc.columns(['org_id', 'scope_key', 'content_hash']).doNothing())
      .returning([...MEMORY_COLUMNS, 'scope_key'])
      .execute();
    const found = new Map<string, { memory: Memory; created: boolean }>();
    for (const r of inserted) found.set(keyOf(r.scope_key, r.content_hash), { memory: toMemory(r), created: true });
    const missing = rows.filter((r) => !found.has(keyOf(r.scopeKey, r.contentHash)));
    if (missing.length > 0) {
      const existing = await sql<MemoryRecord & { scope_key: string }>`
        SELECT ${MEMORY_COLUMNS_SQL}, m.scope_key FROM memories m
        JOIN unnest(${missing.map((r) => r.scopeKey)}::text[], ${missing.map((r) => r.contentHash)}::text[])
          AS k(scope_key, content_hash) ON m.scope_key = k.scope_key AND m.content_hash = k.content_hash
        WHERE m.org_id = ${this.orgId}`.execute(this.tx);
      for (const r of existing.rows) {
        found.set(keyOf(r.scope_key, r.content_hash), { memory: toMemory(r), created: false });
      }
    }
    return rows.map((r) => {
      const hit = found.get(keyOf(r.scopeKey, r.contentHash));
      // Only if the conflicting row was deleted between the two statements.
      if (hit === undefined) throw errors.conflict('A memory of this batch changed while it was written; retry');
      return hit;
    });
  }

  async findMemoriesByIds(ids: readonly string[]): Promise<Memory[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return [];
    const rows = await this.tx
      .selectFrom('memories')
      .select(MEMORY_COLUMNS)
      .where('org_id', '=', this.orgId)
      .where('id', 'in', valid)
      .execute();
    return rows.map(toMemory);
  }

  async upsertEmbeddingsIfCurrent(rows: readonly EmbeddingRow[]): Promise<number> {
    const candidates = rows.filter((r) => isUuid(r.memoryId));
    if (candidates.length === 0) return 0;
    // FOR SHARE, in id order (as upsertEmbeddingIfCurrent, and without deadlocks between two batches).
    const current = await this.tx
      .selectFrom('memories')
      .select(['id', 'content_hash'])
      .where('org_id', '=', this.orgId)
      .where(
        'id',
        'in',
        candidates.map((r) => r.memoryId),
      )
      .orderBy('id')
      .forShare()
      .execute();
    const hashOf = new Map(current.map((c) => [c.id, c.content_hash]));
    const fresh = candidates.filter((r) => hashOf.get(r.memoryId) === r.contentHash);
    await this.upsertEmbeddings(fresh);
    return fresh.length;
  }

  async findMemory(id: string): Promise<Memory | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await this.tx
      .selectFrom('memories')
      .select(MEMORY_COLUMNS)
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .executeTakeFirst();
    return r === undefined ? undefined : toMemory(r);
  }

  async findMemories(filter: MemoryFilter, limit: number, cursor: string | null): Promise<Page<Memory>> {
    const after = cursor === null ? sql`TRUE` : sql`m.id < ${decodeCursor(cursor)}`;
    const r = await sql<MemoryRecord>`
      SELECT ${MEMORY_COLUMNS_SQL} FROM memories m
      WHERE ${filterSql(this.orgId, filter)} AND ${after}
      ORDER BY m.id DESC LIMIT ${limit + 1}`.execute(this.tx);
    const items = r.rows.slice(0, limit).map(toMemory);
    const last = items.at(-1);
    return { items, nextCursor: r.rows.length > limit && last !== undefined ? encodeCursor(last.id) : null };
  }

  async updateMemory(
    id: string,
    patch: MemoryPatch & { contentHash?: string },
    expectedVersion?: number,
  ): Promise<Memory | undefined> {
    if (!isUuid(id)) return undefined;
    const current = await this.tx
      .selectFrom('memories')
      .selectAll()
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (current === undefined) return undefined;
    if (expectedVersion !== undefined && expectedVersion !== current.version) {
      throw errors.conflict(`Memory ${id} is at version ${current.version}, not ${expectedVersion}`, {
        currentVersion: current.version,
      });
    }
    await this.tx
      .insertInto('memory_history')
      .values({
        org_id: this.orgId,
        memory_id: id,
        version: current.version,
        scope_user: current.scope_user,
        scope_agent: current.scope_agent,
        scope_project: current.scope_project,
        scope_session: current.scope_session,
        content: current.content,
        content_hash: current.content_hash,
        metadata: JSON.stringify(current.metadata),
        tags: current.tags,
        source: current.source,
        valid_from: current.valid_from,
        valid_to: current.valid_to,
        written_at: current.updated_at,
      })
      .execute();
    const updated = await this.tx
      .updateTable('memories')
      .set({
        ...(patch.content !== undefined ? { content: patch.content } : {}),
        ...(patch.contentHash !== undefined ? { content_hash: patch.contentHash } : {}),
        ...(patch.metadata !== undefined ? { metadata: JSON.stringify(patch.metadata) } : {}),
        ...(patch.tags !== undefined ? { tags: [...patch.tags] } : {}),
        ...(patch.source !== undefined ? { source: patch.source } : {}),
        ...(patch.validFrom !== undefined ? { valid_from: patch.validFrom } : {}),
        ...(patch.validTo !== undefined ? { valid_to: patch.validTo } : {}),
        version: sql<number>`version + 1`,
        updated_at: sql<Date>`now()`,
      })
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .returning(MEMORY_COLUMNS)
      .executeTakeFirstOrThrow();
    return toMemory(updated);
  }

  async deleteMemory(id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const r = await this.tx
      .deleteFrom('memories')
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  async findHistory(id: string): Promise<MemoryVersion[] | undefined> {
    const current = await this.findMemory(id);
    if (current === undefined) return undefined;
    const rows = await this.tx
      .selectFrom('memory_history')
      .selectAll()
      .where('org_id', '=', this.orgId)
      .where('memory_id', '=', id)
      .orderBy('version', 'asc')
      .execute();
    const past: MemoryVersion[] = rows.map((r) => ({
      version: r.version,
      scope: toMemory({ ...r, id, version: r.version, created_at: r.written_at, updated_at: r.written_at }).scope,
      content: r.content,
      metadata: r.metadata,
      tags: r.tags,
      source: r.source,
      validFrom: r.valid_from,
      validTo: r.valid_to,
      writtenAt: r.written_at,
      supersededAt: r.superseded_at,
    }));
    return [
      ...past,
      {
        version: current.version,
        scope: current.scope,
        content: current.content,
        metadata: current.metadata,
        tags: current.tags,
        source: current.source,
        validFrom: current.validFrom,
        validTo: current.validTo,
        writtenAt: current.updatedAt,
        supersededAt: null,
      },
    ];
  }

  async upsertEmbeddings(rows: readonly EmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.tx
      .insertInto('memory_embeddings')
      .values(
        rows.map((r) => ({
          org_id: this.orgId,
          memory_id: r.memoryId,
          model: r.model,
          content_hash: r.contentHash,
          embedding: vectorLiteral(r.vector),
        })),
      )
      .onConflict((oc) =>
        oc.columns(['org_id', 'memory_id', 'model']).doUpdateSet((eb) => ({
          content_hash: eb.ref('excluded.content_hash'),
          embedding: eb.ref('excluded.embedding'),
          created_at: sql<Date>`now()`,
        })),
      )
      .execute();
  }

  async upsertEmbeddingIfCurrent(row: EmbeddingRow): Promise<boolean> {
    if (!isUuid(row.memoryId)) return false;
    // FOR SHARE: an edit of this memory (which locks it FOR UPDATE) waits for
    // us, or we wait for it and then see its new content hash.
    const current = await this.tx
      .selectFrom('memories')
      .select('content_hash')
      .where('org_id', '=', this.orgId)
      .where('id', '=', row.memoryId)
      .forShare()
      .executeTakeFirst();
    if (current?.content_hash !== row.contentHash) return false;
    await this.upsertEmbeddings([row]);
    return true;
  }

  async findMissingEmbeddings(model: string, limit: number) {
    const r = await sql<{ id: string; content: string; content_hash: string }>`
      SELECT m.id, m.content, m.content_hash FROM memories m
      LEFT JOIN memory_embeddings e ON e.org_id = m.org_id AND e.memory_id = m.id AND e.model = ${model}
      WHERE m.org_id = ${this.orgId} AND (e.memory_id IS NULL OR e.content_hash <> m.content_hash)
      ORDER BY m.id LIMIT ${limit}`.execute(this.tx);
    return r.rows.map((x) => ({ id: x.id, content: x.content, contentHash: x.content_hash }));
  }

  async searchLexical(q: LexicalQuery): Promise<RankedMemory[]> {
    if (q.terms.length === 0) return [];
    const { k1, b } = BM25;
    // The org's statistics for the query's lexemes (stemmed as the documents
    // were), read from the tables the write triggers keep (migration 0017).
    const stats = await sql<{ term: string; df: number; docs: number; lexemes: number }>`
      WITH q AS (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', ${q.terms.join(' ')}))) AS term),
      corpus AS (SELECT coalesce(sum(docs), 0)::float8 AS docs, coalesce(sum(lexemes), 0)::float8 AS lexemes
        FROM memory_corpus_stats WHERE org_id = ${this.orgId})
      SELECT q.term, coalesce(s.df, 0)::float8 AS df, corpus.docs, corpus.lexemes FROM q CROSS JOIN corpus
      LEFT JOIN memory_term_stats s ON s.org_id = ${this.orgId} AND s.term = q.term`.execute(this.tx);
    const terms = stats.rows.filter((r) => Number(r.df) > 0);
    const first = stats.rows[0];
    if (terms.length === 0 || first === undefined || Number(first.docs) <= 0) return [];
    const docs = Number(first.docs);
    const avgLength = Math.max(Number(first.lexemes) / docs, 1);
    const idf = (df: number) => Math.log(1 + (docs - df + 0.5) / (df + 0.5));
    if (!hasMemoryFilter(q.filter)) {
      return this.searchPostings(
        terms.map((t) => ({ term: t.term, df: Number(t.df), idf: idf(Number(t.df)) })),
        avgLength,
        q.limit,
      );
    }
    const generating = candidateTerms(terms, hasScopeFilter(q.filter));
    const quote = (t: string) => `'${t.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
    const anyTerm = generating.map((t) => quote(t.term)).join(' | ');
    const where = filterSql(this.orgId, q.filter);
    // Candidates from the GIN index (`::tsquery` takes the lexemes as they
    // are: they are stemmed already); each term's tf is its position count.
    const scored = await this.candidates(sql<{ id: string; score: number }>`
      SELECT c.id, sum(q.idf * (cardinality(u.positions) * ${k1 + 1}::float8)
        / (cardinality(u.positions) + ${k1}::float8 * (1 - ${b}::float8 + ${b}::float8 * length(c.search_tsv) / ${avgLength}::float8)))::float8 AS score
      FROM (SELECT m.id, m.search_tsv FROM memories m WHERE m.search_tsv @@ ${anyTerm}::tsquery AND ${where}) c
      CROSS JOIN LATERAL unnest(c.search_tsv) u
      JOIN unnest(${terms.map((t) => t.term)}::text[], ${terms.map((t) => idf(Number(t.df)))}::float8[]) AS q (term, idf)
        ON q.term = u.lexeme
      GROUP BY c.id ORDER BY score DESC, c.id DESC LIMIT ${q.limit}`);
    return this.withMemories(scored);
  }

  /**
   * BM25 over the org's postings (0020) when no filter bounds the
   * candidates: one index-only scan per term, summed per memory. The
   * rarest terms, up to {@link LEXICAL_POSTINGS_CAP} postings, find the
   * candidates; commoner terms past the cap add their share only to the
   * best {@link LEXICAL_RESCORE} (or twice the limit) of those (Lucene's common-terms idea), so
   * a query of everyday words reads a bounded number of postings.
   */
  private async searchPostings(
    terms: ReadonlyArray<{ term: string; df: number; idf: number }>,
    avgLength: number,
    limit: number,
  ): Promise<RankedMemory[]> {
    const { k1, b } = BM25;
    const byRarity = [...terms].sort((x, y) => x.df - y.df || (x.term < y.term ? -1 : 1));
    const rare: typeof byRarity = [];
    let read = 0;
    for (const t of byRarity) {
      if (rare.length > 0 && read + t.df > LEXICAL_POSTINGS_CAP) break;
      rare.push(t);
      read += t.df;
    }
    const common = byRarity.slice(rare.length);
    // BM25's term weight, all in float8 (numeric arithmetic here cost 2.5x).
    const weight = sql`q.idf * p.tf * ${k1 + 1}::float8
      / (p.tf + ${k1 * (1 - b)}::float8 + ${(k1 * b) / avgLength}::float8 * p.doc_len)`;
    const scored = (
      await sql<{ id: string; score: number }>`
      WITH r AS MATERIALIZED (
        SELECT p.memory_id, sum(${weight})::float8 AS score
        FROM unnest(${rare.map((t) => t.term)}::text[], ${rare.map((t) => t.idf)}::float8[]) AS q (term, idf)
        JOIN memory_postings p ON p.org_id = ${this.orgId} AND p.term = q.term
        GROUP BY p.memory_id
        ORDER BY score DESC, p.memory_id DESC LIMIT ${common.length === 0 ? limit : Math.max(2 * limit, LEXICAL_RESCORE)}
      )
      -- Commoner terms: probed per candidate (index-only, ~2 µs a probe),
      -- not scanned whole and hash-joined (their lists are the longest).
      SELECT r.memory_id AS id, (r.score + coalesce(c.score, 0))::float8 AS score
      FROM r LEFT JOIN LATERAL (
        SELECT sum(${weight})::float8 AS score
        FROM unnest(${common.map((t) => t.term)}::text[], ${common.map((t) => t.idf)}::float8[]) AS q (term, idf)
        JOIN memory_postings p ON p.org_id = ${this.orgId} AND p.term = q.term AND p.memory_id = r.memory_id
      ) c ON true
      ORDER BY score DESC, r.memory_id DESC LIMIT ${limit}`.execute(this.tx)
    ).rows;
    return this.withMemories(scored);
  }

  async findNeighbours(q: NeighbourQuery): Promise<Array<{ of: string; memory: Memory }>> {
    const ids = q.ids.filter(isUuid);
    if (ids.length === 0) return [];
    // The previous and next memory of the same scope in id (= write) order,
    // through memories_scope_order, kept when its event time is within the
    // window. MATERIALIZED keeps the plan "per hit, two index probes": left to
    // itself, without fresh statistics, the planner joined the scope's every
    // memory to every hit first (0.4 s at 40 hits; 1 ms this way).
    const r = await sql<MemoryRecord & { of_id: string }>`
      WITH h AS MATERIALIZED (
        SELECT id, scope_key, coalesce(valid_from, created_at) AS at FROM memories
        WHERE org_id = ${this.orgId} AND id = ANY(${ids}::uuid[])
      ), n AS MATERIALIZED (
        SELECT h.id AS of_id, h.at, nb.id FROM h CROSS JOIN LATERAL (
          (SELECT p.id FROM memories p WHERE p.org_id = ${this.orgId} AND p.scope_key = h.scope_key AND p.id < h.id
            ORDER BY p.id DESC LIMIT 1)
          UNION ALL
          (SELECT x.id FROM memories x WHERE x.org_id = ${this.orgId} AND x.scope_key = h.scope_key AND x.id > h.id
            ORDER BY x.id LIMIT 1)
        ) nb
      )
      SELECT n.of_id, ${MEMORY_COLUMNS_SQL} FROM n JOIN memories m ON m.org_id = ${this.orgId} AND m.id = n.id
      WHERE ${filterSql(this.orgId, q.filter)}
        AND abs(extract(epoch FROM coalesce(m.valid_from, m.created_at) - n.at)) <= ${q.windowSeconds}`.execute(
      this.tx,
    );
    return r.rows.map((row) => ({ of: row.of_id, memory: toMemory(row) }));
  }

  /** Ranked ids with their memories (read as engram_app), in rank order. */
  private async withMemories(scored: ReadonlyArray<{ id: string; score: number }>): Promise<RankedMemory[]> {
    if (scored.length === 0) return [];
    const rows = await this.findByIds(scored.map((r) => r.id));
    return scored.flatMap((r) => {
      const m = rows.get(r.id);
      return m === undefined ? [] : [{ memory: m, score: Number(r.score) }];
    });
  }

  /** Memories by id, as engram_app (under RLS). */
  private async findByIds(ids: readonly string[]): Promise<Map<string, Memory>> {
    const r = await sql<MemoryRecord>`
      SELECT ${MEMORY_COLUMNS_SQL} FROM memories m WHERE m.org_id = ${this.orgId} AND m.id = ANY(${[...ids]}::uuid[])`.execute(
      this.tx,
    );
    return new Map(r.rows.map((row) => [row.id, toMemory(row)]));
  }

  async searchVector(q: VectorQuery): Promise<RankedMemory[]> {
    if (q.vector.length !== q.dimension) throw errors.dimensionMismatch(q.model, q.dimension, q.vector.length);
    const dim = sql.raw(String(Math.trunc(q.dimension)));
    const vec = vectorLiteral(q.vector);
    const distance = sql`e.embedding::vector(${dim}) <=> ${vec}::vector(${dim})`;
    const model = sql.lit(q.model);
    const filtered = hasMemoryFilter(q.filter);
    if (filtered && (await this.countUpTo(q.filter, EXACT_VECTOR_SCAN_MAX + 1)) <= EXACT_VECTOR_SCAN_MAX) {
      // A small scope: its vectors compared exactly (2 ms for a user's 115
      // memories among 100,000) beat the org-wide HNSW walk and its filter
      // (12-23 ms), and recall is exact.
      return this.exactVectorSearch(q, distance, model);
    }
    await sql`SELECT set_config('hnsw.ef_search', ${String(Math.max(100, q.limit))}, true),
      set_config('hnsw.iterative_scan', 'relaxed_order', true)`.execute(this.tx);
    // Stage 1 reads only memory_embeddings, so the planner walks the model's
    // HNSW index (a join here made it estimate one row and scan everything).
    // Memory-level filters apply in stage 2, on a wider candidate set.
    const candidates = filtered ? Math.max(q.limit * 10, 200) : q.limit;
    const r = await sql<MemoryRecord & { distance: number }>`
      SELECT ${MEMORY_COLUMNS_SQL}, c.distance FROM (
        SELECT e.memory_id, e.content_hash, (${distance})::float8 AS distance FROM memory_embeddings e
        WHERE e.org_id = ${this.orgId} AND e.model = ${model}
        ORDER BY ${distance} LIMIT ${candidates}
      ) c JOIN memories m ON m.org_id = ${this.orgId} AND m.id = c.memory_id AND m.content_hash = c.content_hash
      WHERE ${filterSql(this.orgId, q.filter)}
      ORDER BY c.distance LIMIT ${q.limit}`.execute(this.tx);
    // A selective filter, or a small org inside a large shared index, can
    // starve the approximate candidates: scan this org's vectors exactly.
    if (r.rows.length < q.limit) return this.exactVectorSearch(q, distance, model);
    // relaxed_order iterative scans may return slightly out of order.
    return r.rows
      .map((row) => ({ memory: toMemory(row), score: 1 - Number(row.distance) }))
      .sort((a, b) => b.score - a.score);
  }

  /** The filter's memories nearest the query vector, compared one by one. */
  private async exactVectorSearch(
    q: VectorQuery,
    distance: RawBuilder<unknown>,
    model: RawBuilder<unknown>,
  ): Promise<RankedMemory[]> {
    const r = await sql<MemoryRecord & { distance: number }>`
      SELECT * FROM (
        SELECT ${MEMORY_COLUMNS_SQL}, (${distance})::float8 AS distance
        FROM memories m JOIN memory_embeddings e ON e.org_id = m.org_id AND e.memory_id = m.id
          AND e.model = ${model} AND e.content_hash = m.content_hash
        WHERE ${filterSql(this.orgId, q.filter)}
      ) x ORDER BY x.distance, x.id DESC LIMIT ${q.limit}`.execute(this.tx);
    return r.rows.map((row) => ({ memory: toMemory(row), score: 1 - Number(row.distance) }));
  }

  /** How many memories match the filter, counting no further than `max`. */
  private async countUpTo(filter: MemoryFilter | undefined, max: number): Promise<number> {
    const r = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (SELECT 1 FROM memories m WHERE ${filterSql(this.orgId, filter)} LIMIT ${max}) x`.execute(
      this.tx,
    );
    return Number(r.rows[0]?.n ?? 0);
  }
}

/**
 * BM25 parameters: Anserini's defaults (k1 0.9, b 0.4), which also ranked best
 * of the usual settings on conversational turns (LoCoMo, docs/search.md);
 * short documents saturate early and should not be punished much for length.
 */
export const BM25 = { k1: 0.9, b: 0.4 } as const;

/**
 * Documents a broad query may score at most, by the org's document
 * frequencies, when no scope bounds the candidates: past it the commonest
 * terms still score the candidates but no longer bring their own (the
 * "cutoff frequency" of Lucene's common-terms query). Documents that match
 * only such terms rank low anyway; the rarest term always generates.
 */
export const LEXICAL_CANDIDATE_CAP = 20_000;

/**
 * Postings an unfiltered search reads to find its candidates (rarest terms
 * first; the rarest always), and how many of the best candidates the terms
 * past it re-score. 40,000 postings cost about 20 ms on PostgreSQL
 * (docs/search.md).
 */
export const LEXICAL_POSTINGS_CAP = 30_000;
export const LEXICAL_RESCORE = 400;

/**
 * Below this many memories matching a filter (a user's, a session's),
 * vector search compares them all exactly instead of walking the org's
 * HNSW index and filtering afterwards (docs/search.md).
 */
export const EXACT_VECTOR_SCAN_MAX = 1_000;

function candidateTerms<T extends { df: number }>(terms: readonly T[], scoped: boolean): T[] {
  if (scoped) return [...terms];
  const byRarity = [...terms].sort((a, b) => Number(a.df) - Number(b.df));
  const out: T[] = [];
  let total = 0;
  for (const t of byRarity) {
    total += Number(t.df);
    if (out.length > 0 && total > LEXICAL_CANDIDATE_CAP) break;
    out.push(t);
  }
  return out;
}

/** True when a scope field bounds the candidates to one user, agent, project or session. */
function hasScopeFilter(f: MemoryFilter | undefined): boolean {
  const s = f?.scope;
  return s?.user !== undefined || s?.agent !== undefined || s?.project !== undefined || s?.session !== undefined;
}

/** Tables whose searches are index-only scans (the memory postings, 0020): vacuumed by their visibility map. */
const INDEX_ONLY_TABLES = ['memory_postings'] as const;

/** The knowledge graph's tables (0006, 0018), analyzed as they grow. */
const GRAPH_TABLES = [
  'graph_entities',
  'graph_observations',
  'graph_relations',
  'graph_embeddings',
  'graph_embedding_queue',
] as const;

/** True when the filter constrains memories beyond the org. */
function hasMemoryFilter(f: MemoryFilter | undefined): boolean {
  if (f === undefined) return false;
  const s = f.scope;
  return (
    s?.user !== undefined ||
    s?.agent !== undefined ||
    s?.project !== undefined ||
    s?.session !== undefined ||
    (f.tags !== undefined && f.tags.length > 0) ||
    f.metadata !== undefined ||
    f.createdAfter !== undefined ||
    f.createdBefore !== undefined ||
    f.validAt !== undefined
  );
}

function toApiKey(r: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    scopes: r.scopes as Scope[],
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    lastUsedAt: r.last_used_at,
  };
}

export class PgApiKeyStore implements ApiKeyStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
  ) {}

  async insertKey(row: Parameters<ApiKeyStore['insertKey']>[0]): Promise<ApiKey> {
    const r = await this.tx
      .insertInto('api_keys')
      .values({
        org_id: this.orgId,
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        secret_hash: row.secretHash,
        scopes: [...row.scopes],
        expires_at: row.expiresAt,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toApiKey(r);
  }

  async findKeys(): Promise<ApiKey[]> {
    const rows = await this.tx
      .selectFrom('api_keys')
      .selectAll()
      .where('org_id', '=', this.orgId)
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map(toApiKey);
  }

  async revokeKey(id: string): Promise<ApiKey | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await this.tx
      .updateTable('api_keys')
      .set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` })
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return r === undefined ? undefined : toApiKey(r);
  }

  async touchKey(id: string): Promise<void> {
    // At most once a minute per key, so reads don't turn into a write each.
    await this.tx
      .updateTable('api_keys')
      .set({ last_used_at: sql<Date>`now()` })
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .where((eb) =>
        eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', sql<Date>`now() - interval '1 minute'`)]),
      )
      .execute();
  }
}

const toOrg = (r: Selectable<OrgsTable>): Org => ({
  id: r.id,
  slug: r.slug,
  name: r.name,
  region: r.region,
  createdAt: r.created_at,
});

const toOrgQuotas = (r: Selectable<OrgQuotasTable>): OrgQuotas => ({
  read: r.read_per_min,
  write: r.write_per_min,
  search: r.search_per_min,
  admin: r.admin_per_min,
  import: r.import_per_min,
});

/**
 * System work across orgs, on the pools of `Database` (database.ts): lookups and
 * writes on `systemDb` (sessions as engram_system), the API key door on the
 * app's `db` (engram_app may only call engram_find_api_key), and maintenance
 * that needs the owner (indexes, ANALYZE, VACUUM) on `adminDb`. The explicit
 * SET ROLE engram_system in transactions is for PGlite, whose one session is
 * its superuser.
 */
export class PgSystemStore implements SystemStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly systemDb: Kysely<DB>,
    private readonly adminDb: Kysely<DB>,
  ) {}

  async findOrgBySlug(slug: string): Promise<Org | undefined> {
    const r = await this.systemDb.selectFrom('orgs').selectAll().where('slug', '=', slug).executeTakeFirst();
    return r === undefined ? undefined : toOrg(r);
  }

  async findOrgById(id: string): Promise<Org | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await this.systemDb.selectFrom('orgs').selectAll().where('id', '=', id).executeTakeFirst();
    return r === undefined ? undefined : toOrg(r);
  }

  async findOrgs(): Promise<Org[]> {
    return (await this.systemDb.selectFrom('orgs').selectAll().orderBy('slug').execute()).map(toOrg);
  }

  async insertOrg(org: { id: string; slug: string; name: string; region: string }): Promise<Org> {
    const r = await guard(() => this.systemDb.insertInto('orgs').values(org).returningAll().executeTakeFirstOrThrow());
    return toOrg(r);
  }

  async updateOrgRegion(slug: string, region: string): Promise<Org | undefined> {
    const r = await this.systemDb
      .updateTable('orgs')
      .set({ region })
      .where('slug', '=', slug)
      .returningAll()
      .executeTakeFirst();
    return r === undefined ? undefined : toOrg(r);
  }

  withAuditChain<T>(chainId: string, fn: (chain: AuditChainStore) => Promise<T>): Promise<T> {
    return guard(() =>
      this.systemDb.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_system', true)`.execute(tx);
        return fn(new PgAuditStore(tx, chainId, chainId === SYSTEM_CHAIN ? null : chainId));
      }),
    );
  }

  systemAuditChain(): AuditChainStore {
    return {
      appendEntry: (build: (head: AuditHead | undefined) => AuditEntry) =>
        this.withAuditChain(SYSTEM_CHAIN, (c) => c.appendEntry(build)),
      findHead: () => this.withAuditChain(SYSTEM_CHAIN, (c) => c.findHead()),
      findChain: (afterSeq: number, limit: number) =>
        this.withAuditChain(SYSTEM_CHAIN, (c) => c.findChain(afterSeq, limit)),
    };
  }

  async findAuditChainIds(): Promise<Array<{ chainId: string; orgId: string | null }>> {
    const r = await sql<{ chain_id: string; org_id: string | null }>`
      SELECT chain_id, org_id FROM audit_heads UNION SELECT DISTINCT chain_id, org_id FROM audit_log
      ORDER BY 1`.execute(this.systemDb);
    return [...new Map(r.rows.map((x) => [x.chain_id, { chainId: x.chain_id, orgId: x.org_id }])).values()];
  }

  async findOrgIds(): Promise<string[]> {
    const rows = await this.systemDb.selectFrom('orgs').select('id').orderBy('id').execute();
    return rows.map((r) => r.id);
  }

  async findLocalRepoLocations(exceptOrgId: string): Promise<string[]> {
    return this.systemDb.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_system', true)`.execute(tx);
      const r = await sql<{ location: string }>`SELECT location FROM code_repos
        WHERE org_id <> ${exceptOrgId}::uuid AND (source_kind = 'path' OR location LIKE 'file:%')`.execute(tx);
      return r.rows.map((x) => x.location);
    });
  }

  async findApiKeyByPrefix(prefix: string): Promise<ApiKeyCredential | undefined> {
    const r = await sql<{
      org_id: string;
      id: string;
      secret_hash: string;
      scopes: string[];
      expires_at: Date | null;
      revoked_at: Date | null;
    }>`SELECT * FROM engram_find_api_key(${prefix})`.execute(this.db);
    const k = r.rows[0];
    return k === undefined
      ? undefined
      : {
          orgId: k.org_id,
          id: k.id,
          secretHash: k.secret_hash,
          scopes: k.scopes,
          expiresAt: k.expires_at,
          revokedAt: k.revoked_at,
        };
  }

  async findOrgQuotas(orgId: string): Promise<OrgQuotas | undefined> {
    if (!isUuid(orgId)) return undefined;
    const r = await this.systemDb.selectFrom('org_quotas').selectAll().where('org_id', '=', orgId).executeTakeFirst();
    return r === undefined ? undefined : toOrgQuotas(r);
  }

  async upsertOrgQuotas(orgId: string, q: OrgQuotas): Promise<OrgQuotas> {
    if (!isUuid(orgId)) throw errors.validation('org id must be a UUID');
    const values = {
      read_per_min: q.read,
      write_per_min: q.write,
      search_per_min: q.search,
      admin_per_min: q.admin,
      import_per_min: q.import,
    };
    const r = await guard(() =>
      this.systemDb
        .insertInto('org_quotas')
        .values({ org_id: orgId, ...values })
        .onConflict((oc) => oc.column('org_id').doUpdateSet({ ...values, updated_at: sql<Date>`now()` }))
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return toOrgQuotas(r);
  }

  async registerEmbeddingModel(model: { name: string; provider: string; dimension: number }): Promise<void> {
    await this.adminDb
      .insertInto('embedding_models')
      .values(model)
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.adminDb
      .selectFrom('embedding_models')
      .select('dimension')
      .where('name', '=', model.name)
      .executeTakeFirstOrThrow();
    if (row.dimension !== model.dimension) throw errors.dimensionMismatch(model.name, row.dimension, model.dimension);
    const indexName = `memory_embeddings_hnsw_${createHash('sha256').update(model.name).digest('hex').slice(0, 16)}`;
    await sql`CREATE INDEX IF NOT EXISTS ${sql.id(indexName)} ON memory_embeddings
      USING hnsw ((embedding::vector(${sql.raw(String(Math.trunc(model.dimension)))})) vector_cosine_ops)
      WHERE model = ${sql.lit(model.name)}`.execute(this.adminDb);
    // Code search chunks (0012) are embedded with the same model.
    await sql`CREATE INDEX IF NOT EXISTS ${sql.id(indexName.replace('memory_', 'code_chunk_'))} ON code_chunk_embeddings
      USING hnsw ((embedding::vector(${sql.raw(String(Math.trunc(model.dimension)))})) vector_cosine_ops)
      WHERE model = ${sql.lit(model.name)}`.execute(this.adminDb);
    // So are knowledge graph entities (0018).
    await sql`CREATE INDEX IF NOT EXISTS ${sql.id(indexName.replace('memory_', 'graph_'))} ON graph_embeddings
      USING hnsw ((embedding::vector(${sql.raw(String(Math.trunc(model.dimension)))})) vector_cosine_ops)
      WHERE model = ${sql.lit(model.name)}`.execute(this.adminDb);
  }

  async analyze(force = false): Promise<boolean> {
    if (!force) {
      // Like autovacuum's analyze threshold: 50 rows + 10 % of the table.
      const r = await sql<{ n: number; estimated: number }>`
        SELECT (SELECT count(*)::int FROM memories) AS n,
               (SELECT reltuples::float8 FROM pg_class WHERE oid = 'memories'::regclass) AS estimated`.execute(
        this.adminDb,
      );
      const row = r.rows[0];
      const n = row?.n ?? 0;
      const estimated = row?.estimated ?? -1;
      if (estimated >= 0 && Math.abs(n - estimated) <= 50 + 0.1 * estimated) return false;
    }
    await sql`ANALYZE memories, memory_embeddings, memory_history, memory_postings`.execute(this.adminDb);
    return true;
  }

  async analyzeGraph(): Promise<boolean> {
    // This session's counts, as in vacuum(); other sessions report theirs within a second or so.
    await sql`SELECT pg_stat_force_next_flush()`.execute(this.adminDb);
    const r = await sql<{ relname: string }>`
      SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
      WHERE s.schemaname = 'public' AND s.relname = ANY(${[...GRAPH_TABLES]}::text[])
        AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
      ORDER BY s.relname`.execute(this.adminDb);
    if (r.rows.length === 0) return false;
    await sql`ANALYZE ${sql.join(r.rows.map((x) => sql.table(x.relname)))}`.execute(this.adminDb);
    return true;
  }

  /**
   * Only the columns the graph's joins and filters use: with the long text
   * columns too (SCIP ids, signatures, docs) it took 0.3 s for 2,300 files
   * instead of 0.1–0.17 s. The others are only looked up by index with an
   * equality, which default estimates plan the same way; on PostgreSQL
   * autovacuum analyzes them in its own time.
   */
  async analyzeCodeGraph(): Promise<void> {
    await sql`ANALYZE code_files (org_id, repo_id, id, path, language),
      code_symbols (org_id, repo_id, file_id, id, parent_id, name, kind, exported),
      code_edges (org_id, repo_id, file_id, kind, src_kind, src_id, dst_kind, dst_id, dst_name, dst_module,
        hint_file_id, confidence)`.execute(this.adminDb);
  }

  /** Only the columns searches filter and join on, as for the graph (see {@link analyzeCodeGraph}). */
  async analyzeCodeChunks(): Promise<void> {
    await sql`ANALYZE code_chunks (org_id, repo_id, file_id, id, symbol_id, path, language),
      code_chunk_embeddings (org_id, chunk_id, model)`.execute(this.adminDb);
  }

  async vacuum(tables?: readonly string[]): Promise<string[]> {
    // A session reports its row counts at most once a second, after a statement: without this, the
    // embedded store's single session would show the counts as they were before its latest writes.
    await sql`SELECT pg_stat_force_next_flush()`.execute(this.adminDb);
    const r = await sql<{ relname: string }>`
      SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
      WHERE s.schemaname = 'public' AND (s.n_dead_tup > 50 + 0.2 * s.n_live_tup
        -- autovacuum's insert threshold: keeps the visibility map current so
        -- index-only scans skip the heap.
        OR s.n_ins_since_vacuum > 1000 + 0.2 * s.n_live_tup
        -- The tables read by index-only scans, by their visibility map itself
        -- (kept in pg_class): the counters above start from zero whenever the
        -- embedded store reopens.
        OR (s.relname = ANY(${[...INDEX_ONLY_TABLES]}::text[]) AND c.relpages > 8
          AND c.relallvisible < 0.9 * c.relpages))
        ${tables === undefined ? sql`` : sql`AND s.relname = ANY(${[...tables]}::text[])`}
      ORDER BY s.relname`.execute(this.adminDb);
    const vacuumed = r.rows.map((x) => x.relname);
    // VACUUM runs outside any transaction block, one table at a time.
    for (const table of vacuumed) await sql`VACUUM ${sql.table(table)}`.execute(this.adminDb);
    return vacuumed;
  }

  /**
   * Whether the app's connection may switch to engram_system (see PgMemoryStore.candidateIds):
   * tried, not looked up, since it depends on the login (session_user), not on the session's
   * role (engram_app, which is no member), and on PostgreSQL 16+ on the membership's SET option.
   */
  async canActAsSystem(): Promise<boolean> {
    try {
      await this.db.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_system', true)`.execute(tx);
      });
      return true;
    } catch {
      return false;
    }
  }

  /** Memories always rank with Engram's own per-org BM25 (migration 0017), on every engine. */
  lexicalRanker(): Promise<'bm25'> {
    return Promise.resolve('bm25');
  }
}
