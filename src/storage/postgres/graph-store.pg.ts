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

/** A term as a tsquery operand: quoted, so `to_tsquery` stems it and nothing in it is an operator. */
const quoteTerm = (t: string): string => `'${t.replaceAll("'", "''")}'`;

/** Full-text terms with a candidate pool of their own (see searchLexical); the rest share one. */
const TERM_POOLS = 8;

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
    private readonly canActAsSystem: boolean,
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
    const ids = rows.filter((r) => created.has(r.id)).map((r) => r.id);
    if (ids.length === 0) return [];
    // New rows are invisible to others until commit: these inserts never wait.
    const observations = rows
      .filter((r) => created.has(r.id))
      .flatMap((r) => r.observations.map((content) => ({ entityId: r.id, content })));
    const queue = sql`INSERT INTO graph_embedding_queue (org_id, scope_key, entity_id)
      SELECT ${this.orgId}, ${scopeKey}, unnest(${ids}::uuid[])`;
    await (
      observations.length === 0
        ? queue
        : sql`WITH added AS (${this.insertObservationRows(scopeKey, observations)}) ${queue}`
    ).execute(this.tx);
    return ids;
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
    scopeKey: string,
    rows: ReadonlyArray<{ entityId: string; content: string }>,
  ): Promise<Array<{ entityId: string; content: string }>> {
    if (rows.length === 0) return [];
    const r = await sql<{ entity_id: string; content: string }>`
      WITH added AS (${this.insertObservationRows(scopeKey, rows)}), ${this.bumpRevisions(sql`SELECT entity_id FROM added`)}
      SELECT entity_id, content FROM added`.execute(this.tx);
    return r.rows.map((x) => ({ entityId: x.entity_id, content: x.content }));
  }

  /** The INSERT of observations (skipping contents an entity has), returning those added. */
  private insertObservationRows(
    scopeKey: string,
    rows: ReadonlyArray<{ entityId: string; content: string }>,
  ): RawBuilder<{ entity_id: string; content: string }> {
    // unnest keeps the statement at 5 parameters for up to 10,000 rows;
    // ORDER BY ord makes `position` follow the input order.
    return sql<{ entity_id: string; content: string }>`
      INSERT INTO graph_observations (org_id, scope_key, entity_id, content, content_hash)
      SELECT ${this.orgId}, ${scopeKey}, u.entity_id, u.content, u.content_hash
      FROM unnest(${rows.map((x) => x.entityId)}::uuid[], ${rows.map((x) => x.content)}::text[],
                  ${rows.map((x) => sha256(x.content))}::text[]) WITH ORDINALITY AS u(entity_id, content, content_hash, ord)
      ORDER BY u.ord
      ON CONFLICT (org_id, entity_id, content_hash) DO NOTHING
      RETURNING entity_id, content`;
  }

  async deleteObservations(rows: ReadonlyArray<{ entityId: string; content: string }>): Promise<string[]> {
    if (rows.length === 0) return [];
    const r = await sql<{ entity_id: string }>`
      WITH removed AS (
        DELETE FROM graph_observations o
        USING unnest(${rows.map((x) => x.entityId)}::uuid[], ${rows.map((x) => sha256(x.content))}::text[]) AS d(entity_id, content_hash)
        WHERE o.org_id = ${this.orgId} AND o.entity_id = d.entity_id AND o.content_hash = d.content_hash
        RETURNING o.entity_id
      ), ${this.bumpRevisions(sql`SELECT entity_id FROM removed`)}
      SELECT DISTINCT entity_id FROM removed`.execute(this.tx);
    return r.rows.map((x) => x.entity_id);
  }

  /**
   * CTEs (`bumped`, `queued`) for the statement that changed the entities of
   * `changed` (a query of entity ids): their text changed, so their revision
   * moves on and they are queued for embedding. Callers hold their row locks.
   * No indexed column changes, so the update can be HOT. The ids reach the
   * UPDATE as an array, read by key whatever the planner guesses of them.
   */
  private bumpRevisions(changed: RawBuilder<unknown>): RawBuilder<unknown> {
    return sql`bumped AS (
        UPDATE graph_entities SET revision = revision + 1, updated_at = now()
        WHERE org_id = ${this.orgId} AND id = ANY(ARRAY(${changed}))
        RETURNING org_id, scope_key, id
      ), queued AS (
        INSERT INTO graph_embedding_queue (org_id, scope_key, entity_id) SELECT org_id, scope_key, id FROM bumped
        ON CONFLICT DO NOTHING
      )`;
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

  async findNodes(
    scopeKey: string,
    by: { names: readonly string[] } | { ids: readonly string[] },
  ): Promise<{ entities: GraphEntityRecord[]; relations: Relation[] }> {
    const match = 'names' in by ? sql`e.name = ANY(${[...by.names]}::text[])` : sql`e.id = ANY(${[...by.ids]}::uuid[])`;
    const r = await this.entitySelect(sql`e.scope_key = ${scopeKey} AND ${match}`, sql`ORDER BY e.id`).execute(this.tx);
    const entities = r.rows.map(toRecord);
    if (entities.length === 0) return { entities, relations: [] };
    // Two short statements plan faster on PGlite than one that does both
    // (1.3 ms vs 2.4 ms). With statistics the planner ORs the two indexes (the
    // primary key by source, graph_relations_to by target); without, it may
    // read the org's relations, as it then does for any query.
    const ids = entities.map((e) => e.id);
    const rel = await sql<Relation>`
      SELECT f.name AS "from", t.name AS "to", r.relation_type AS "relationType"
      FROM graph_relations r
      JOIN graph_entities f ON f.org_id = r.org_id AND f.id = r.from_id
      JOIN graph_entities t ON t.org_id = r.org_id AND t.id = r.to_id
      WHERE r.org_id = ${this.orgId} AND (r.from_id = ANY(${ids}::uuid[]) OR r.to_id = ANY(${ids}::uuid[]))
      ORDER BY r.position`.execute(this.tx);
    return { entities, relations: rel.rows.map((x) => ({ from: x.from, to: x.to, relationType: x.relationType })) };
  }

  async findEntityPage(scopeKey: string, limit: number, afterId: string | null): Promise<GraphEntityRecord[]> {
    const after = afterId === null ? sql`TRUE` : sql`e.id > ${afterId}`;
    const r = await this.entitySelect(
      sql`e.scope_key = ${scopeKey} AND ${after}`,
      sql`ORDER BY e.id LIMIT ${limit}`,
    ).execute(this.tx);
    return r.rows.map(toRecord);
  }

  async findRelationsFrom(ids: readonly string[]): Promise<Relation[]> {
    if (ids.length === 0) return [];
    const r = await sql<Relation>`
      SELECT f.name AS "from", t.name AS "to", r.relation_type AS "relationType"
      FROM graph_relations r
      JOIN graph_entities f ON f.org_id = r.org_id AND f.id = r.from_id
      JOIN graph_entities t ON t.org_id = r.org_id AND t.id = r.to_id
      WHERE r.org_id = ${this.orgId} AND r.from_id = ANY(${[...ids]}::uuid[])
      ORDER BY r.position`.execute(this.tx);
    return r.rows.map((x) => ({ from: x.from, to: x.to, relationType: x.relationType }));
  }

  async searchCandidates(
    scopeKey: string,
    q: {
      text: string;
      terms: readonly string[];
      limit: number;
      vector?: { vector: Float32Array; model: string; limit: number } | undefined;
    },
  ): Promise<{ lexical: RankedEntityId[]; vector: RankedEntityId[] }> {
    // A scope without entities (most memory searches, when no agent keeps a
    // graph there) answers from one index probe, not the planning and run of
    // the candidate queries (≈ 5 ms of planning on PostgreSQL).
    const any = await sql<{ found: boolean }>`SELECT EXISTS (
      SELECT 1 FROM graph_entities WHERE org_id = ${this.orgId} AND scope_key = ${scopeKey}) AS found`.execute(this.tx);
    if (any.rows[0]?.found !== true) return { lexical: [], vector: [] };
    // Both signals are id queries, run as engram_system: under RLS, Postgres
    // will not use a non-leakproof operator (LIKE, @@) as an index condition
    // (see PgMemoryStore.candidateIds). Each filters by org itself; entities
    // are then read as engram_app, under RLS. One statement switches role and
    // sets up the HNSW scan.
    if (!this.canActAsSystem) {
      return { lexical: await this.searchLexical(scopeKey, q), vector: await this.searchVector(scopeKey, q.vector) };
    }
    await sql`SELECT set_config('role', 'engram_system', true), ${this.hnswSettings(q.vector?.limit ?? 0)}`.execute(
      this.tx,
    );
    try {
      return {
        lexical: await this.searchLexical(scopeKey, q),
        vector: await this.searchVector(scopeKey, q.vector, false),
      };
    } finally {
      // If a query failed, the transaction is aborted and runs nothing more; let its error through.
      await sql`SELECT set_config('role', 'engram_app', true)`.execute(this.tx).catch(() => undefined);
    }
  }

  /** ef_search: the candidates the HNSW scan keeps; iterative: it goes on past filtered-out rows. */
  private hnswSettings(limit: number): RawBuilder<unknown> {
    return sql`set_config('hnsw.ef_search', ${String(Math.max(40, limit))}, true),
      set_config('hnsw.iterative_scan', 'relaxed_order', true)`;
  }

  /**
   * Candidate ids (trigram GIN indexes on the lowered texts, 0018, and GIN on
   * the stored tsvectors; at most `limit` per way of matching and per table:
   * every substring match when there are up to `limit`, every match of a rare
   * term however common the others are), ranked in the same statement with the
   * official semantics: substring matches first, then full-text rank.
   */
  private async searchLexical(
    scopeKey: string,
    q: { text: string; terms: readonly string[]; limit: number },
  ): Promise<RankedEntityId[]> {
    // LIKE with the text's own wildcards and backslashes escaped is strpos
    // (the official `includes`), and trigram indexes serve it.
    const pattern = sql`'%' || replace(replace(replace(lower(${q.text}::text), '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'`;
    // An observation row per entity is the common case; several matching
    // observations of one entity take several rows of its pool.
    const obsPool = q.limit * 2;
    const entity = (match: RawBuilder<unknown>) => sql`(SELECT e.id FROM graph_entities e
      WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey} AND ${match} LIMIT ${q.limit})`;
    // Observations carry their entity's scope (0018): joined to entities to
    // filter it, the planner hashed the whole scope when it misjudged a term.
    const observation = (match: RawBuilder<unknown>) => sql`(SELECT o.entity_id AS id FROM graph_observations o
      WHERE o.org_id = ${this.orgId} AND o.scope_key = ${scopeKey} AND ${match} LIMIT ${obsPool})`;
    const parts = [
      entity(sql`(lower(e.name) LIKE ${pattern} OR lower(e.entity_type) LIKE ${pattern})`),
      observation(sql`lower(o.content) LIKE ${pattern}`),
    ];
    // One pool per term (a common word cannot crowd out a rare one), then
    // the remaining terms of a long query in one.
    const groups = q.terms.slice(0, TERM_POOLS).map(quoteTerm);
    if (q.terms.length > TERM_POOLS) groups.push(q.terms.slice(TERM_POOLS).map(quoteTerm).join(' | '));
    for (const g of groups) {
      parts.push(entity(sql`e.search_tsv @@ to_tsquery('english', ${g})`));
      parts.push(observation(sql`o.search_tsv @@ to_tsquery('english', ${g})`));
    }
    // Any term matches; ts_rank_cd rewards entities matching more of them.
    const anyTerm = q.terms.length === 0 ? null : q.terms.map(quoteTerm).join(' | ');
    // The candidates reach the ranking as an array: the planner then reads
    // them by key instead of weighing a join it might turn into a scan.
    const r = await sql<{ id: string; score: number }>`
      WITH c AS MATERIALIZED (${sql.join(parts, sql` UNION `)}),
      q AS (SELECT lower(${q.text}) AS sub, to_tsquery('english', ${anyTerm}::text) AS ts)
      SELECT x.id, (CASE WHEN x.sub THEN 1 ELSE 0 END + x.rank)::float8 AS score FROM (
        SELECT e.id,
          (strpos(lower(e.name), q.sub) > 0 OR strpos(lower(e.entity_type), q.sub) > 0
            OR coalesce(obs.sub, false)) AS sub,
          (coalesce(e.search_tsv @@ q.ts, false) OR coalesce(obs.ft, false)) AS ft,
          (CASE WHEN e.search_tsv @@ q.ts THEN ts_rank_cd(e.search_tsv, q.ts) ELSE 0 END
            + coalesce(obs.rank, 0))::float8 AS rank
        FROM graph_entities e CROSS JOIN q
        LEFT JOIN LATERAL (
          SELECT bool_or(strpos(lower(o.content), q.sub) > 0) AS sub,
            bool_or(coalesce(o.search_tsv @@ q.ts, false)) AS ft,
            sum(CASE WHEN o.search_tsv @@ q.ts THEN ts_rank_cd(o.search_tsv, q.ts) ELSE 0 END) AS rank
          FROM graph_observations o WHERE o.org_id = e.org_id AND o.entity_id = e.id
        ) obs ON true
        WHERE e.org_id = ${this.orgId} AND e.scope_key = ${scopeKey} AND e.id = ANY(ARRAY(SELECT id FROM c))
      ) x
      WHERE x.sub OR x.ft
      ORDER BY x.sub DESC, x.rank DESC, x.id
      LIMIT ${q.limit}`.execute(this.tx);
    return r.rows.map((x) => ({ id: x.id, score: Number(x.score) }));
  }

  private async searchVector(
    scopeKey: string,
    q: { vector: Float32Array; model: string; limit: number } | undefined,
    configure = true,
  ): Promise<RankedEntityId[]> {
    if (q === undefined) return [];
    const { vector } = q;
    const dim = sql.raw(String(Math.trunc(vector.length)));
    // The query vector as an InitPlan, once: the HNSW scan orders by it and
    // returns the distance the select list names (`ORDER BY distance`). With
    // the vector as a literal in both places, each parse and recomputation
    // made the same scan 2.8 times slower on PGlite (6.5 ms vs 2.4 ms, 10,000
    // vectors, ef_search 40).
    const distance = sql`v.embedding::vector(${dim}) <=> (SELECT ${vectorLiteral(vector)}::vector(${dim}))`;
    // A literal, so the model's partial HNSW index (registerEmbeddingModel) matches.
    const model = sql.lit(q.model);
    if (configure) await sql`SELECT ${this.hnswSettings(q.limit)}`.execute(this.tx);
    const where = sql`v.org_id = ${this.orgId} AND v.model = ${model} AND v.scope_key = ${scopeKey}`;
    let rows = (
      await sql<{ id: string; distance: number }>`
      SELECT v.entity_id AS id, ${distance} AS distance FROM graph_embeddings v
      WHERE ${where} ORDER BY distance LIMIT ${q.limit}`.execute(this.tx)
    ).rows;
    if (rows.length < q.limit) {
      // A small scope inside a large index can starve the approximate scan:
      // scan this scope's vectors exactly (OFFSET 0 keeps the index out). A
      // vector of another dimension under the model's name is skipped.
      rows = (
        await sql<{ id: string; distance: number }>`
        SELECT x.id, x.distance FROM (
          SELECT v.entity_id AS id, ${distance} AS distance FROM graph_embeddings v
          WHERE ${where} AND vector_dims(v.embedding) = ${vector.length} OFFSET 0
        ) x ORDER BY x.distance, x.id LIMIT ${q.limit}`.execute(this.tx)
      ).rows;
    }
    // relaxed_order iterative scans may return slightly out of order.
    return rows
      .map((x) => ({ id: x.id, score: 1 - Number(x.distance) }))
      .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async findStaleEmbeddings(model: string, limit: number): Promise<GraphEmbeddingTask[]> {
    // The queue, and vectors of another model: two range scans of
    // graph_embeddings_model (a btree has no `<>`). The ids first, then the
    // entities by key.
    const r = await sql<{ id: string }>`
      (SELECT q.entity_id AS id FROM graph_embedding_queue q WHERE q.org_id = ${this.orgId} LIMIT ${limit})
      UNION
      (SELECT v.entity_id FROM graph_embeddings v
       WHERE v.org_id = ${this.orgId} AND (v.model < ${model} OR v.model > ${model}) LIMIT ${limit})
      ORDER BY 1 LIMIT ${limit}`.execute(this.tx);
    if (r.rows.length === 0) return [];
    const tasks = await this.entitySelect(
      sql`e.id = ANY(${r.rows.map((x) => x.id)}::uuid[])`,
      sql`ORDER BY e.id`,
    ).execute(this.tx);
    return tasks.rows.map((x) => ({ ...toRecord(x), revision: x.revision }));
  }

  async updateEmbeddings(rows: readonly GraphEmbeddingRow[]): Promise<number> {
    if (rows.length === 0) return 0;
    // One statement: lock the entities still at the revision embedded, in id
    // order as writers do (a write waiting for the lock queues its entity
    // again after we commit), store their vectors, take them off the queue.
    const r = await sql<{ n: number }>`
      WITH d AS (
        SELECT * FROM unnest(${rows.map((x) => x.id)}::uuid[], ${rows.map((x) => x.revision)}::int[],
                             ${rows.map((x) => x.model)}::text[], ${rows.map((x) => vectorLiteral(x.vector))}::text[])
          AS d(id, revision, model, v)
      ), current AS (
        SELECT e.id, e.scope_key, d.revision, d.model, d.v FROM d
        JOIN graph_entities e ON e.org_id = ${this.orgId} AND e.id = d.id AND e.revision = d.revision
        ORDER BY e.id FOR NO KEY UPDATE OF e
      ), stored AS (
        INSERT INTO graph_embeddings (org_id, entity_id, scope_key, model, revision, embedding)
        SELECT ${this.orgId}, c.id, c.scope_key, c.model, c.revision, c.v::vector FROM current c
        ON CONFLICT (org_id, entity_id) DO UPDATE
          SET model = excluded.model, revision = excluded.revision, embedding = excluded.embedding
        RETURNING entity_id
      ), dequeued AS (
        DELETE FROM graph_embedding_queue q USING current c
        WHERE q.org_id = ${this.orgId} AND q.scope_key = c.scope_key AND q.entity_id = c.id
      )
      SELECT count(*)::int AS n FROM stored`.execute(this.tx);
    return r.rows[0]?.n ?? 0;
  }
}
