import { sql, type RawBuilder, type Transaction } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { globToRegex, type ChunkDraft, type ChunkSymbol } from '../../domain/code/code-chunks.ts';
import type { CodeChunk, CodeSearchFilter, RankedChunk } from '../../domain/code/code-search.types.ts';
import { errors } from '../../errors.ts';
import type {
  ChunkEmbeddingRow,
  CodeChunkStore,
  NeighbourChunk,
  StaleChunkFile,
} from '../../ports/code-chunk-store.ts';
import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';
import type { DB } from './schema.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Chunks per multi-row INSERT: 17 parameters each stays far below the 65,535 limit. */
const INSERT_BATCH = 500;
const GRAPH_EDGES = ['CALLS', 'REFERENCES'];

const vectorLiteral = (v: Float32Array): string => `[${Array.from(v).join(',')}]`;

interface ChunkRecord {
  id: string;
  repo_id: string;
  repo_name: string;
  file_id: string;
  path: string;
  language: string;
  kind: string;
  name: string;
  qualified_name: string | null;
  symbol_id: string | null;
  part: number;
  start_line: number;
  end_line: number;
  doc: string | null;
  content: string;
}

/** The chunk columns over alias `c` joined with its repo as `r`. */
const CHUNK_COLUMNS = sql.raw(
  [
    'c.id',
    'c.repo_id',
    'r.name AS repo_name',
    'c.file_id',
    'c.path',
    'c.language',
    'c.kind',
    'c.name',
    'c.qualified_name',
    'c.symbol_id',
    'c.part',
    'c.start_line',
    'c.end_line',
    'c.doc',
    'c.content',
  ].join(', '),
);

const toChunk = (r: ChunkRecord): CodeChunk => ({
  id: r.id,
  repoId: r.repo_id,
  repoName: r.repo_name,
  fileId: r.file_id,
  path: r.path,
  language: r.language as CodeLanguage,
  kind: r.kind as SymbolKind | 'block',
  name: r.name,
  qualifiedName: r.qualified_name,
  symbolId: r.symbol_id,
  part: r.part,
  startLine: r.start_line,
  endLine: r.end_line,
  doc: r.doc,
  content: r.content,
});

/** SQL conditions over alias `c` for a filter, always including the org. */
function filterSql(orgId: string, f: CodeSearchFilter | undefined): RawBuilder<unknown> {
  const parts: RawBuilder<unknown>[] = [sql`c.org_id = ${orgId}`];
  if (f?.repoIds !== undefined && f.repoIds.length > 0) {
    const ids = f.repoIds.filter((id) => UUID_RE.test(id));
    parts.push(ids.length === 0 ? sql`FALSE` : sql`c.repo_id = ANY(${ids}::uuid[])`);
  }
  if (f?.languages !== undefined && f.languages.length > 0) {
    parts.push(sql`c.language = ANY(${[...f.languages]}::text[])`);
  }
  if (f?.paths !== undefined && f.paths.length > 0) {
    parts.push(
      sql`(${sql.join(
        f.paths.map((g) => sql`c.path ~ ${globToRegex(g)}`),
        sql` OR `,
      )})`,
    );
  }
  return sql.join(parts, sql` AND `);
}

const hasFilter = (f: CodeSearchFilter | undefined): boolean =>
  (f?.repoIds?.length ?? 0) > 0 || (f?.languages?.length ?? 0) > 0 || (f?.paths?.length ?? 0) > 0;

/**
 * Code search chunks on Postgres. Lexical search ranks the stored tsvector of
 * identifier-split tokens (BM25 through pg_textsearch where its index exists,
 * else ts_rank_cd over GIN candidates found as engram_system, as memories do);
 * vector search walks the model's HNSW index first and applies filters on a
 * wider candidate set, falling back to an exact scan of the org's vectors.
 */
export class PgCodeChunkStore implements CodeChunkStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
    private readonly canActAsSystem: boolean,
  ) {}

  /** Runs an id query as engram_system so `@@` can use the GIN index (see PgMemoryStore.candidateIds). */
  private async asSystem<R>(query: RawBuilder<R>): Promise<R[]> {
    if (!this.canActAsSystem) return (await query.execute(this.tx)).rows;
    await sql`SELECT set_config('role', 'engram_system', true)`.execute(this.tx);
    try {
      return (await query.execute(this.tx)).rows;
    } finally {
      await sql`SELECT set_config('role', 'engram_app', true)`.execute(this.tx).catch(() => undefined);
    }
  }

  async lexicalRanker(): Promise<'bm25' | 'ts_rank_cd'> {
    const r = await sql<{ ok: boolean }>`SELECT to_regclass('code_chunks_bm25') IS NOT NULL AS ok`.execute(this.tx);
    return r.rows[0]?.ok === true ? 'bm25' : 'ts_rank_cd';
  }

  async findStaleFiles(repoId: string, afterPath: string, limit: number): Promise<StaleChunkFile[]> {
    if (!UUID_RE.test(repoId)) return [];
    const r = await sql<{ id: string; path: string; language: string; content_hash: string }>`
      SELECT f.id, f.path, f.language, f.content_hash FROM code_files f
      WHERE f.org_id = ${this.orgId} AND f.repo_id = ${repoId} AND f.path > ${afterPath} AND (
        NOT EXISTS (SELECT 1 FROM code_chunks c
          WHERE c.org_id = f.org_id AND c.file_id = f.id AND c.file_hash = f.content_hash)
        OR EXISTS (SELECT 1 FROM code_chunks c
          WHERE c.org_id = f.org_id AND c.file_id = f.id AND c.symbol_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM code_symbols s WHERE s.org_id = c.org_id AND s.id = c.symbol_id)))
      ORDER BY f.path LIMIT ${limit}`.execute(this.tx);
    return r.rows.map((x) => ({
      id: x.id,
      path: x.path,
      language: x.language as CodeLanguage,
      contentHash: x.content_hash,
    }));
  }

  async findFileSymbols(fileIds: readonly string[]): Promise<Map<string, ChunkSymbol[]>> {
    const out = new Map<string, ChunkSymbol[]>();
    if (fileIds.length === 0) return out;
    const r = await sql<{
      file_id: string;
      id: string;
      parent_id: string | null;
      kind: string;
      name: string;
      qualified_name: string;
      start_line: number;
      end_line: number;
      doc: string | null;
    }>`SELECT file_id, id, parent_id, kind, name, qualified_name, start_line, end_line, doc FROM code_symbols
      WHERE org_id = ${this.orgId} AND file_id = ANY(${[...fileIds]}::uuid[])
      ORDER BY file_id, start_line, start_col`.execute(this.tx);
    for (const s of r.rows) {
      const list = out.get(s.file_id) ?? [];
      list.push({
        id: s.id,
        parentId: s.parent_id,
        kind: s.kind as SymbolKind,
        name: s.name,
        qualifiedName: s.qualified_name,
        startLine: s.start_line,
        endLine: s.end_line,
        doc: s.doc,
      });
      out.set(s.file_id, list);
    }
    return out;
  }

  async replaceFileChunks(repoId: string, file: StaleChunkFile, chunks: readonly ChunkDraft[]): Promise<boolean> {
    // Locking the file row serialises two chunk runs over the same file.
    const current = await sql<{ content_hash: string }>`SELECT content_hash FROM code_files
      WHERE org_id = ${this.orgId} AND id = ${file.id} FOR UPDATE`.execute(this.tx);
    if (current.rows[0]?.content_hash !== file.contentHash) return false;
    const old = (
      await sql<{ id: string }>`SELECT id FROM code_chunks
        WHERE org_id = ${this.orgId} AND file_id = ${file.id}`.execute(this.tx)
    ).rows.map((x) => x.id);
    const fresh: string[] = [];
    for (let i = 0; i < chunks.length; i += INSERT_BATCH) {
      const values = chunks.slice(i, i + INSERT_BATCH).map((c) => {
        const id = uuidv7();
        fresh.push(id);
        return sql`(${this.orgId}::uuid, ${repoId}::uuid, ${file.id}::uuid, ${id}::uuid, ${c.symbolId}::uuid,
          ${file.path}, ${file.language}, ${c.kind}, ${c.name}, ${c.qualifiedName}, ${c.part}::int,
          ${c.startLine}::int, ${c.endLine}::int, ${c.doc}, ${c.content}, ${c.text}, ${c.contentHash},
          ${file.contentHash}, ${c.searchText})`;
      });
      await sql`INSERT INTO code_chunks (org_id, repo_id, file_id, id, symbol_id, path, language, kind, name,
        qualified_name, part, start_line, end_line, doc, content, text, content_hash, file_hash, search_text)
        VALUES ${sql.join(values)}`.execute(this.tx);
    }
    if (old.length > 0) {
      if (fresh.length > 0) {
        // A chunk whose text did not change keeps its vectors: nothing to re-embed.
        await sql`INSERT INTO code_chunk_embeddings (org_id, chunk_id, model, content_hash, embedding)
          SELECT n.org_id, n.id, o.model, o.content_hash, o.embedding
          FROM code_chunks n JOIN code_chunk_embeddings o
            ON o.org_id = n.org_id AND o.content_hash = n.content_hash AND o.chunk_id = ANY(${old}::uuid[])
          WHERE n.org_id = ${this.orgId} AND n.id = ANY(${fresh}::uuid[])
          ON CONFLICT (org_id, chunk_id, model) DO NOTHING`.execute(this.tx);
      }
      await sql`DELETE FROM code_chunks WHERE org_id = ${this.orgId} AND id = ANY(${old}::uuid[])`.execute(this.tx);
    }
    return true;
  }

  async findMissingEmbeddings(repoId: string, model: string, limit: number, afterId?: string) {
    if (!UUID_RE.test(repoId) || (afterId !== undefined && !UUID_RE.test(afterId))) return [];
    // From `afterId` on, each round reads on from where the last stopped instead of from the first chunk.
    const r = await sql<{ id: string; text: string; content_hash: string }>`
      SELECT c.id, c.text, c.content_hash FROM code_chunks c
      WHERE c.org_id = ${this.orgId} AND c.repo_id = ${repoId}
        ${afterId === undefined ? sql`` : sql`AND c.id > ${afterId}`}
        AND NOT EXISTS (SELECT 1 FROM code_chunk_embeddings e
          WHERE e.org_id = c.org_id AND e.chunk_id = c.id AND e.model = ${model} AND e.content_hash = c.content_hash)
      ORDER BY c.id LIMIT ${limit}`.execute(this.tx);
    return r.rows.map((x) => ({ id: x.id, text: x.text, contentHash: x.content_hash }));
  }

  async upsertEmbeddings(rows: readonly ChunkEmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    const values = rows.map((r) => sql`(${r.chunkId}::uuid, ${r.model}, ${r.contentHash}, ${vectorLiteral(r.vector)})`);
    await sql`INSERT INTO code_chunk_embeddings (org_id, chunk_id, model, content_hash, embedding)
      SELECT c.org_id, c.id, v.model, c.content_hash, v.embedding::vector
      FROM (VALUES ${sql.join(values)}) AS v (chunk_id, model, content_hash, embedding)
      JOIN code_chunks c ON c.org_id = ${this.orgId} AND c.id = v.chunk_id AND c.content_hash = v.content_hash
      ON CONFLICT (org_id, chunk_id, model) DO UPDATE
        SET content_hash = excluded.content_hash, embedding = excluded.embedding, created_at = now()`.execute(this.tx);
  }

  /** Reads chunks by id (as engram_app, under RLS), in the given order. */
  private async chunksByIds(ids: readonly string[]): Promise<Map<string, CodeChunk>> {
    if (ids.length === 0) return new Map();
    const r = await sql<ChunkRecord>`SELECT ${CHUNK_COLUMNS} FROM code_chunks c
      JOIN code_repos r ON r.org_id = c.org_id AND r.id = c.repo_id
      WHERE c.org_id = ${this.orgId} AND c.id = ANY(${[...ids]}::uuid[])`.execute(this.tx);
    return new Map(r.rows.map((row) => [row.id, toChunk(row)]));
  }

  async searchLexical(q: {
    terms: readonly string[];
    limit: number;
    filter?: CodeSearchFilter | undefined;
  }): Promise<RankedChunk[]> {
    if (q.terms.length === 0) return [];
    const where = filterSql(this.orgId, q.filter);
    let ranked: Array<{ id: string; score: number }>;
    if ((await this.lexicalRanker()) === 'bm25') {
      // Scores are negative, 0 = no match (see PgMemoryStore.searchLexical).
      const query = q.terms.join(' ');
      const r = await sql<{ id: string; raw: number }>`
        SELECT c.id, (c.search_text <@> to_bm25query(${query}, 'code_chunks_bm25'))::float8 AS raw
        FROM code_chunks c WHERE ${where}
        ORDER BY c.search_text <@> to_bm25query(${query}, 'code_chunks_bm25') LIMIT ${q.limit}`.execute(this.tx);
      ranked = r.rows.filter((x) => Number(x.raw) < 0).map((x) => ({ id: x.id, score: -Number(x.raw) }));
    } else {
      // Terms are identifier tokens ([\p{L}\p{N}]+), quoted anyway.
      const anyTerm = q.terms.map((t) => `'${t.replaceAll("'", "''")}'`).join(' | ');
      const rows = await this.asSystem(sql<{ id: string; score: number }>`
        SELECT c.id, ts_rank_cd(c.search_tsv, to_tsquery('english', ${anyTerm}), 32)::float8 AS score
        FROM code_chunks c WHERE c.search_tsv @@ to_tsquery('english', ${anyTerm}) AND ${where}
        ORDER BY score DESC, c.id DESC LIMIT ${q.limit}`);
      ranked = rows.map((x) => ({ id: x.id, score: Number(x.score) }));
    }
    const chunks = await this.chunksByIds(ranked.map((x) => x.id));
    return ranked.flatMap((x) => {
      const chunk = chunks.get(x.id);
      return chunk === undefined ? [] : [{ chunk, score: x.score }];
    });
  }

  async searchVector(q: {
    vector: Float32Array;
    model: string;
    dimension: number;
    limit: number;
    filter?: CodeSearchFilter | undefined;
  }): Promise<RankedChunk[]> {
    if (q.vector.length !== q.dimension) throw errors.dimensionMismatch(q.model, q.dimension, q.vector.length);
    const dim = sql.raw(String(Math.trunc(q.dimension)));
    const vec = vectorLiteral(q.vector);
    const distance = sql`e.embedding::vector(${dim}) <=> ${vec}::vector(${dim})`;
    const model = sql.lit(q.model);
    await sql`SELECT set_config('hnsw.ef_search', ${String(Math.max(100, q.limit))}, true),
      set_config('hnsw.iterative_scan', 'relaxed_order', true)`.execute(this.tx);
    // Stage 1 reads only the vectors, so the planner walks the model's HNSW
    // index; filters apply in stage 2 on a wider candidate set.
    const candidates = hasFilter(q.filter) ? Math.max(q.limit * 10, 200) : q.limit;
    const where = filterSql(this.orgId, q.filter);
    const r = await sql<ChunkRecord & { distance: number }>`
      SELECT ${CHUNK_COLUMNS}, x.distance FROM (
        SELECT e.chunk_id, e.content_hash, (${distance})::float8 AS distance FROM code_chunk_embeddings e
        WHERE e.org_id = ${this.orgId} AND e.model = ${model}
        ORDER BY ${distance} LIMIT ${candidates}
      ) x JOIN code_chunks c ON c.org_id = ${this.orgId} AND c.id = x.chunk_id AND c.content_hash = x.content_hash
      JOIN code_repos r ON r.org_id = c.org_id AND r.id = c.repo_id
      WHERE ${where}
      ORDER BY x.distance LIMIT ${q.limit}`.execute(this.tx);
    let rows = r.rows;
    if (rows.length < q.limit) {
      // A selective filter, or a small org in a large shared index, can starve
      // the approximate candidates: scan this org's vectors exactly.
      rows = (
        await sql<ChunkRecord & { distance: number }>`
        SELECT * FROM (
          SELECT ${CHUNK_COLUMNS}, (${distance})::float8 AS distance
          FROM code_chunks c JOIN code_chunk_embeddings e ON e.org_id = c.org_id AND e.chunk_id = c.id
            AND e.model = ${model} AND e.content_hash = c.content_hash
          JOIN code_repos r ON r.org_id = c.org_id AND r.id = c.repo_id
          WHERE ${where}
        ) x ORDER BY x.distance LIMIT ${q.limit}`.execute(this.tx)
      ).rows;
    }
    return rows
      .map((row) => ({ chunk: toChunk(row), score: 1 - Number(row.distance) }))
      .sort((a, b) => b.score - a.score);
  }

  async findNeighbours(
    symbolIds: readonly string[],
    limit: number,
    filter?: CodeSearchFilter,
  ): Promise<NeighbourChunk[]> {
    const seeds = symbolIds.filter((id) => UUID_RE.test(id));
    if (seeds.length === 0) return [];
    const r = await sql<ChunkRecord & { seed: string; edge: string; confidence: number }>`
      WITH n AS (
        SELECT e.src_id AS seed, e.dst_id AS other, e.kind AS edge, e.confidence FROM code_edges e
        WHERE e.org_id = ${this.orgId} AND e.kind = ANY(${GRAPH_EDGES}::text[]) AND e.src_kind = 'symbol'
          AND e.dst_kind = 'symbol' AND e.confidence > 0 AND e.src_id = ANY(${seeds}::uuid[])
        UNION ALL
        SELECT e.dst_id, e.src_id,
          CASE e.kind WHEN 'CALLS' THEN 'CALLED_BY' ELSE 'REFERENCED_BY' END, e.confidence FROM code_edges e
        WHERE e.org_id = ${this.orgId} AND e.kind = ANY(${GRAPH_EDGES}::text[]) AND e.src_kind = 'symbol'
          AND e.dst_kind = 'symbol' AND e.confidence > 0 AND e.dst_id = ANY(${seeds}::uuid[])
      )
      SELECT DISTINCT ON (c.id) ${CHUNK_COLUMNS}, n.seed, n.edge, n.confidence::float8 AS confidence
      FROM n JOIN code_chunks c ON c.org_id = ${this.orgId} AND c.symbol_id = n.other AND c.part = 1
      JOIN code_repos r ON r.org_id = c.org_id AND r.id = c.repo_id
      WHERE ${filterSql(this.orgId, filter)} AND n.other <> n.seed
      ORDER BY c.id, n.confidence DESC, n.edge
      LIMIT ${limit}`.execute(this.tx);
    return r.rows.map((row) => ({
      chunk: toChunk(row),
      score: Number(row.confidence),
      seedSymbolId: row.seed,
      edge: row.edge,
    }));
  }
}
