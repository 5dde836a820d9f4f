import { createHash } from 'node:crypto';
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { MemoryScope } from '../../domain/memory/memory.types.ts';
import type { Relation } from '../../domain/graph/graph.types.ts';
import type {
  GraphEmbeddingRow,
  GraphEmbeddingTask,
  GraphEntityRecord,
  GraphRelationIds,
  GraphStore,
  NewGraphEntity,
  RankedEntityId,
} from '../../ports/tenant-db.ts';
import type { DB } from './schema.ts';

const vectorLiteral = (v: Float32Array): string => `[${Array.from(v).join(',')}]`;
const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** Any deterministic total order will do: every transaction inserts in the same one. */
const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface EntityRow {
  id: string;
  name: string;
  entity_type: string;
  observations: string[];
}

const toRecord = (r: EntityRow): GraphEntityRecord => ({
  id: r.id,
  name: r.name,
  entityType: r.entity_type,
  observations: r.observations,
});

/**
 * The knowledge graph on Postgres. Every transaction locks the entity rows it
 * needs in one statement, in id order (`lockEntities`, `deleteEntities`,
 * `updateEmbeddings`), and inserts new names in name order, so concurrent
 * writers queue instead of deadlocking. Observations and relations are only
 * written under their entities' row locks (FOR NO KEY UPDATE, which still lets
 * foreign-key checks through): two inserts never wait on each other's unique
 * keys, so rows can keep their input order (`position`), and an entity cannot
 * be deleted between the check that it exists and the insert that needs it.
 */
export class PgGraphStore implements GraphStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
  ) {}

  /** Entities of alias `e` with their observations in insertion order. */
  private entitySelect(where: RawBuilder<unknown>, tail: RawBuilder<unknown> = sql``) {
    return sql<EntityRow & { revision: number }>`
      SELECT e.id, e.name, e.entity_type, e.revision,
        coalesce((SELECT array_agg(o.content ORDER BY o.position) FROM graph_observations o
                  WHERE o.org_id = e.org_id AND o.entity_id = e.id), '{}') AS observations
      FROM graph_entities e
      WHERE e.org_id = ${this.orgId} AND ${where}
      ${tail}`;
  }

  async insertEntities(scope: MemoryScope, scopeKey: string, rows: readonly NewGraphEntity[]): Promise<string[]> {
    if (rows.length === 0) return [];
    const sorted = [...rows].sort((a, b) => byString(a.name, b.name));
    const inserted = await this.tx
      .insertInto('graph_entities')
      .values(
        sorted.map((r) => ({
          org_id: this.orgId,
          id: r.id,
          scope_user: scope.user ?? null,
          scope_agent: scope.agent ?? null,
          scope_project: scope.project ?? null,
          scope_session: scope.session ?? null,
          scope_key: scopeKey,
          name: r.name,
          entity_type: r.entityType,
        })),
      )
      .onConflict((oc) => oc.columns(['org_id', 'scope_key', 'name']).doNothing())
      .returning('id')
      .execute();
    const created = new Set(inserted.map((r) => r.id));
    // New rows are invisible to others until commit: these inserts never wait.
    await this.insertObservationRows(
      rows
        .filter((r) => created.has(r.id))
        .flatMap((r) => r.observations.map((content) => ({ entityId: r.id, content }))),
    );
    return rows.filter((r) => created.has(r.id)).map((r) => r.id);
  }

  async lockEntities(scopeKey: string, names: readonly string[]): Promise<Array<{ id: string; name: string }>> {
    if (names.length === 0) return [];
    const r = await sql<{ id: string; name: string }>`
      SELECT e.id, e.name FROM graph_entities e
      WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey} AND e.name = ANY(${[...names]}::text[])
      ORDER BY e.id FOR NO KEY UPDATE`.execute(this.tx);
    return r.rows;
  }

  async insertObservations(
    rows: ReadonlyArray<{ entityId: string; content: string }>,
  ): Promise<Array<{ entityId: string; content: string }>> {
    const added = await this.insertObservationRows(rows);
    await this.bumpRevisions([...new Set(added.map((a) => a.entityId))]);
    return added;
  }

  private async insertObservationRows(
    rows: ReadonlyArray<{ entityId: string; content: string }>,
  ): Promise<Array<{ entityId: string; content: string }>> {
    if (rows.length === 0) return [];
    // unnest keeps the statement at 3 parameters for up to 10,000 rows;
    // ORDER BY ord makes `position` follow the input order.
    const r = await sql<{ entity_id: string; content: string }>`
      INSERT INTO graph_observations (org_id, entity_id, content, content_hash)
      SELECT ${this.orgId}, u.entity_id, u.content, u.content_hash
      FROM unnest(${rows.map((x) => x.entityId)}::uuid[], ${rows.map((x) => x.content)}::text[],
                  ${rows.map((x) => sha256(x.content))}::text[]) WITH ORDINALITY AS u(entity_id, content, content_hash, ord)
      ORDER BY u.ord
      ON CONFLICT (org_id, entity_id, content_hash) DO NOTHING
      RETURNING entity_id, content`.execute(this.tx);
    return r.rows.map((x) => ({ entityId: x.entity_id, content: x.content }));
  }

  async deleteObservations(rows: ReadonlyArray<{ entityId: string; content: string }>): Promise<string[]> {
    if (rows.length === 0) return [];
    const r = await sql<{ entity_id: string }>`
      DELETE FROM graph_observations o
      USING unnest(${rows.map((x) => x.entityId)}::uuid[], ${rows.map((x) => sha256(x.content))}::text[]) AS d(entity_id, content_hash)
      WHERE o.org_id = ${this.orgId} AND o.entity_id = d.entity_id AND o.content_hash = d.content_hash
      RETURNING o.entity_id`.execute(this.tx);
    const changed = [...new Set(r.rows.map((x) => x.entity_id))];
    await this.bumpRevisions(changed);
    return changed;
  }

  /** The entities' text changed: their vectors are now stale. Callers hold their row locks. */
  private async bumpRevisions(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await sql`UPDATE graph_entities SET revision = revision + 1, updated_at = now()
      WHERE org_id = ${this.orgId} AND id = ANY(${[...ids]}::uuid[])`.execute(this.tx);
  }

  async deleteEntities(scopeKey: string, names: readonly string[]): Promise<number> {
    if (names.length === 0) return 0;
    const locked = await sql<{ id: string }>`
      SELECT e.id FROM graph_entities e
      WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey} AND e.name = ANY(${[...names]}::text[])
      ORDER BY e.id FOR UPDATE`.execute(this.tx);
    if (locked.rows.length === 0) return 0;
    // Observations and relations (either end) go by ON DELETE CASCADE.
    const r = await this.tx
      .deleteFrom('graph_entities')
      .where('org_id', '=', this.orgId)
      .where(
        'id',
        'in',
        locked.rows.map((x) => x.id),
      )
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async insertRelations(scopeKey: string, rows: readonly GraphRelationIds[]): Promise<GraphRelationIds[]> {
    if (rows.length === 0) return [];
    const r = await sql<{ from_id: string; to_id: string; relation_type: string }>`
      INSERT INTO graph_relations (org_id, scope_key, from_id, to_id, relation_type)
      SELECT ${this.orgId}, ${scopeKey}, u.from_id, u.to_id, u.relation_type
      FROM unnest(${rows.map((x) => x.fromId)}::uuid[], ${rows.map((x) => x.toId)}::uuid[],
                  ${rows.map((x) => x.relationType)}::text[]) WITH ORDINALITY AS u(from_id, to_id, relation_type, ord)
      ORDER BY u.ord
      ON CONFLICT (org_id, from_id, to_id, relation_type) DO NOTHING
      RETURNING from_id, to_id, relation_type`.execute(this.tx);
    return r.rows.map((x) => ({ fromId: x.from_id, toId: x.to_id, relationType: x.relation_type }));
  }

  async deleteRelations(scopeKey: string, rows: readonly Relation[]): Promise<number> {
    if (rows.length === 0) return 0;
    // Lock the sources first, as insertRelations' callers do.
    const sources = await this.lockEntities(scopeKey, [...new Set(rows.map((x) => x.from))]);
    if (sources.length === 0) return 0;
    const r = await sql`
      DELETE FROM graph_relations r
      USING unnest(${rows.map((x) => x.from)}::text[], ${rows.map((x) => x.to)}::text[],
                   ${rows.map((x) => x.relationType)}::text[]) AS d(from_name, to_name, relation_type),
            graph_entities f, graph_entities t
      WHERE f.org_id = ${this.orgId} AND f.scope_key = ${scopeKey} AND f.name = d.from_name
        AND t.org_id = ${this.orgId} AND t.scope_key = ${scopeKey} AND t.name = d.to_name
        AND r.org_id = ${this.orgId} AND r.from_id = f.id AND r.to_id = t.id AND r.relation_type = d.relation_type`.execute(
      this.tx,
    );
    return Number(r.numAffectedRows ?? 0);
  }

  async findEntities(
    scopeKey: string,
    by: { names: readonly string[] } | { ids: readonly string[] },
  ): Promise<GraphEntityRecord[]> {
    const match = 'names' in by ? sql`e.name = ANY(${[...by.names]}::text[])` : sql`e.id = ANY(${[...by.ids]}::uuid[])`;
    const r = await this.entitySelect(sql`e.scope_key = ${scopeKey} AND ${match}`, sql`ORDER BY e.id`).execute(this.tx);
    return r.rows.map(toRecord);
  }

  async findEntityPage(scopeKey: string, limit: number, afterId: string | null): Promise<GraphEntityRecord[]> {
    const after = afterId === null ? sql`TRUE` : sql`e.id > ${afterId}`;
    const r = await this.entitySelect(
      sql`e.scope_key = ${scopeKey} AND ${after}`,
      sql`ORDER BY e.id LIMIT ${limit}`,
    ).execute(this.tx);
    return r.rows.map(toRecord);
  }

  async findRelations(ids: readonly string[], mode: 'from' | 'touching'): Promise<Relation[]> {
    if (ids.length === 0) return [];
    const list = [...ids];
    const ends =
      mode === 'from'
        ? sql`r.from_id = ANY(${list}::uuid[])`
        : sql`(r.from_id = ANY(${list}::uuid[]) OR r.to_id = ANY(${list}::uuid[]))`;
    const r = await sql<Relation>`
      SELECT f.name AS "from", t.name AS "to", r.relation_type AS "relationType"
      FROM graph_relations r
      JOIN graph_entities f ON f.org_id = r.org_id AND f.id = r.from_id
      JOIN graph_entities t ON t.org_id = r.org_id AND t.id = r.to_id
      WHERE r.org_id = ${this.orgId} AND ${ends}
      ORDER BY r.position`.execute(this.tx);
    return r.rows.map((x) => ({ from: x.from, to: x.to, relationType: x.relationType }));
  }

  async searchLexical(
    scopeKey: string,
    q: { text: string; terms: readonly string[]; limit: number },
  ): Promise<RankedEntityId[]> {
    // Any term matches; ts_rank_cd rewards entities matching more of them.
    const tsquery = q.terms.length === 0 ? null : q.terms.map((t) => `'${t.replaceAll("'", "''")}'`).join(' | ');
    // An exact scan of the scope: substring matching (the official semantics)
    // has no index without pg_trgm, and graphs are small.
    const r = await sql<{ id: string; score: number }>`
      WITH q AS (SELECT lower(${q.text}) AS sub, to_tsquery('english', ${tsquery}::text) AS ts),
      ents AS (
        SELECT e.id, e.name, e.entity_type, e.search_tsv FROM graph_entities e
        WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey}
      ),
      obs AS (
        SELECT o.entity_id,
          bool_or(strpos(lower(o.content), q.sub) > 0) AS sub,
          bool_or(coalesce(o.search_tsv @@ q.ts, false)) AS ft,
          sum(CASE WHEN o.search_tsv @@ q.ts THEN ts_rank_cd(o.search_tsv, q.ts) ELSE 0 END) AS rank
        FROM graph_observations o JOIN ents ON ents.id = o.entity_id CROSS JOIN q
        WHERE o.org_id = ${this.orgId}
        GROUP BY o.entity_id
      )
      SELECT x.id, (CASE WHEN x.sub THEN 1 ELSE 0 END + x.rank)::float8 AS score FROM (
        SELECT e.id,
          (strpos(lower(e.name), q.sub) > 0 OR strpos(lower(e.entity_type), q.sub) > 0
            OR coalesce(obs.sub, false)) AS sub,
          (coalesce(e.search_tsv @@ q.ts, false) OR coalesce(obs.ft, false)) AS ft,
          (CASE WHEN e.search_tsv @@ q.ts THEN ts_rank_cd(e.search_tsv, q.ts) ELSE 0 END
            + coalesce(obs.rank, 0))::float8 AS rank
        FROM ents e CROSS JOIN q LEFT JOIN obs ON obs.entity_id = e.id
      ) x
      WHERE x.sub OR x.ft
      ORDER BY x.sub DESC, x.rank DESC, x.id
      LIMIT ${q.limit}`.execute(this.tx);
    return r.rows.map((x) => ({ id: x.id, score: Number(x.score) }));
  }

  async searchVector(
    scopeKey: string,
    q: { vector: Float32Array; model: string; limit: number },
  ): Promise<RankedEntityId[]> {
    const vec = vectorLiteral(q.vector);
    // Exact cosine over the scope. Vectors of another dimension (a model
    // swapped behind the same name) are skipped rather than failing the query.
    const r = await sql<{ id: string; score: number }>`
      SELECT x.id, (1 - x.distance)::float8 AS score FROM (
        SELECT e.id, e.embedding <=> ${vec}::vector AS distance FROM graph_entities e
        WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey}
          AND e.embedding_model = ${q.model} AND vector_dims(e.embedding) = ${q.vector.length}
        OFFSET 0
      ) x
      ORDER BY x.distance, x.id LIMIT ${q.limit}`.execute(this.tx);
    return r.rows.map((x) => ({ id: x.id, score: Number(x.score) }));
  }

  async findStaleEmbeddings(
    scopeKey: string,
    model: string,
    limit: number,
    first: readonly string[],
  ): Promise<GraphEmbeddingTask[]> {
    const r = await this.entitySelect(
      sql`e.scope_key = ${scopeKey}
        AND (e.embedding_model IS DISTINCT FROM ${model} OR e.embedded_revision IS DISTINCT FROM e.revision)`,
      sql`ORDER BY e.id = ANY(${[...first]}::uuid[]) DESC, e.id LIMIT ${limit}`,
    ).execute(this.tx);
    return r.rows.map((x) => ({ ...toRecord(x), revision: x.revision }));
  }

  async updateEmbeddings(rows: readonly GraphEmbeddingRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    const ids = rows.map((x) => x.id);
    // Lock in id order first: a multi-row UPDATE locks in scan order.
    await sql`SELECT e.id FROM graph_entities e WHERE e.org_id = ${this.orgId} AND e.id = ANY(${ids}::uuid[])
      ORDER BY e.id FOR NO KEY UPDATE`.execute(this.tx);
    const r = await sql`
      UPDATE graph_entities e
      SET embedding = d.v::vector, embedding_model = d.model, embedded_revision = d.revision
      FROM unnest(${ids}::uuid[], ${rows.map((x) => x.revision)}::int[], ${rows.map((x) => x.model)}::text[],
                  ${rows.map((x) => vectorLiteral(x.vector))}::text[]) AS d(id, revision, model, v)
      WHERE e.org_id = ${this.orgId} AND e.id = d.id AND e.revision = d.revision`.execute(this.tx);
    return Number(r.numAffectedRows ?? 0);
  }
}
