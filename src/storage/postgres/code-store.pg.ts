import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';
import type {
  CodeStore,
  EdgeRow,
  ImportTarget,
  IndexedFile,
  NewRepoRow,
  RepoPatch,
  StoredFile,
  SymbolRow,
  UnresolvedImport,
} from '../../ports/code-store.ts';
import {
  CONFIDENCE,
  EMPTY_PROGRESS,
  type CodeReference,
  type CodeSymbol,
  type EdgeKind,
  type IndexProgress,
  type Repo,
  type RepoCounts,
  type RepoSourceKind,
  type RepoStatus,
  type SymbolMatch,
  type SymbolQuery,
} from '../../domain/code/code.types.ts';
import type { DB } from './schema.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isUuid = (s: string): boolean => UUID_RE.test(s);

/** Rows per multi-row INSERT: ~20 columns each stays far below the 65,535-parameter limit. */
const INSERT_BATCH = 500;

interface RepoRowDb {
  id: string;
  name: string;
  source_kind: string;
  location: string;
  default_branch: string | null;
  package_manager: string | null;
  package_name: string | null;
  package_version: string | null;
  status: string;
  progress: unknown;
  index_job_id: string | null;
  last_indexed_commit: string | null;
  last_indexed_at: Date | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
}

const REPO_COLUMNS = sql.raw(
  'id, name, source_kind, location, default_branch, package_manager, package_name, package_version, status, ' +
    'progress, index_job_id, last_indexed_commit, last_indexed_at, last_error, created_at, updated_at',
);

function toProgress(v: unknown): IndexProgress {
  const o = (typeof v === 'string' ? JSON.parse(v) : v) as Partial<IndexProgress> | null;
  return { ...EMPTY_PROGRESS, ...(o ?? {}) };
}

const toRepo = (r: RepoRowDb): Repo => ({
  id: r.id,
  name: r.name,
  sourceKind: r.source_kind as RepoSourceKind,
  location: r.location,
  defaultBranch: r.default_branch,
  package:
    r.package_manager === null || r.package_name === null
      ? null
      : { manager: r.package_manager, name: r.package_name, version: r.package_version ?? '.' },
  status: r.status as RepoStatus,
  progress: toProgress(r.progress),
  indexJobId: r.index_job_id,
  lastIndexedCommit: r.last_indexed_commit,
  lastIndexedAt: r.last_indexed_at,
  lastError: r.last_error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

interface SymbolRowDb {
  id: string;
  repo_id: string;
  repo_name: string;
  path: string;
  scip_symbol: string;
  kind: string;
  name: string;
  qualified_name: string;
  language: string;
  start_line: number;
  start_col: number;
  end_line: number;
  end_col: number;
  signature: string;
  doc: string | null;
  exported: boolean;
}

const SYMBOL_SELECT = sql.raw(`s.id, s.repo_id, r.name AS repo_name, f.path, s.scip_symbol, s.kind, s.name,
  s.qualified_name, s.language, s.start_line, s.start_col, s.end_line, s.end_col, s.signature, s.doc, s.exported`);

const toSymbol = (r: SymbolRowDb): CodeSymbol => ({
  id: r.id,
  repoId: r.repo_id,
  repoName: r.repo_name,
  path: r.path,
  scipSymbol: r.scip_symbol,
  kind: r.kind as SymbolKind,
  name: r.name,
  qualifiedName: r.qualified_name,
  language: r.language as CodeLanguage,
  span: { startLine: r.start_line, startColumn: r.start_col, endLine: r.end_line, endColumn: r.end_col },
  signature: r.signature,
  doc: r.doc,
  exported: r.exported,
});

const likeEscape = (s: string): string => s.replace(/[\\%_]/g, (c) => `\\${c}`);

function* chunks<T>(items: readonly T[], size: number): Generator<readonly T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/**
 * The code graph on Postgres, inside one org's transaction (RLS applies).
 * Inserts go in multi-row statements of {@link INSERT_BATCH} rows; every
 * statement also filters by `org_id`, RLS being the second wall.
 */
export class PgCodeStore implements CodeStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
  ) {}

  async insertRepo(row: NewRepoRow): Promise<Repo> {
    const r = await sql<RepoRowDb>`
      INSERT INTO code_repos (org_id, id, name, source_kind, location, status, progress, index_job_id)
      VALUES (${this.orgId}, ${row.id}, ${row.name}, ${row.sourceKind}, ${row.location}, 'queued',
        ${JSON.stringify(EMPTY_PROGRESS)}::jsonb, ${row.indexJobId})
      RETURNING ${REPO_COLUMNS}`.execute(this.tx);
    return toRepo(r.rows[0] as RepoRowDb);
  }

  async findRepo(id: string): Promise<Repo | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await sql<RepoRowDb>`SELECT ${REPO_COLUMNS} FROM code_repos
      WHERE org_id = ${this.orgId} AND id = ${id}`.execute(this.tx);
    return r.rows[0] === undefined ? undefined : toRepo(r.rows[0]);
  }

  async lockRepo(id: string): Promise<Repo | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await sql<RepoRowDb>`SELECT ${REPO_COLUMNS} FROM code_repos
      WHERE org_id = ${this.orgId} AND id = ${id} FOR UPDATE`.execute(this.tx);
    return r.rows[0] === undefined ? undefined : toRepo(r.rows[0]);
  }

  async findRepos(): Promise<Repo[]> {
    const r = await sql<RepoRowDb>`SELECT ${REPO_COLUMNS} FROM code_repos
      WHERE org_id = ${this.orgId} ORDER BY id`.execute(this.tx);
    return r.rows.map(toRepo);
  }

  async updateRepo(id: string, p: RepoPatch): Promise<Repo | undefined> {
    if (!isUuid(id)) return undefined;
    const sets: RawBuilder<unknown>[] = [sql`updated_at = now()`];
    if (p.status !== undefined) sets.push(sql`status = ${p.status}`);
    if (p.progress !== undefined) sets.push(sql`progress = ${JSON.stringify(p.progress)}::jsonb`);
    if (p.indexJobId !== undefined) sets.push(sql`index_job_id = ${p.indexJobId}`);
    if (p.defaultBranch !== undefined) sets.push(sql`default_branch = ${p.defaultBranch}`);
    if (p.package !== undefined) {
      sets.push(
        sql`package_manager = ${p.package?.manager ?? null}, package_name = ${p.package?.name ?? null},
          package_version = ${p.package?.version ?? null}`,
      );
    }
    if (p.lastIndexedCommit !== undefined) sets.push(sql`last_indexed_commit = ${p.lastIndexedCommit}`);
    if (p.lastIndexedAt !== undefined) sets.push(sql`last_indexed_at = ${p.lastIndexedAt}`);
    if (p.lastError !== undefined) sets.push(sql`last_error = ${p.lastError}`);
    const r = await sql<RepoRowDb>`UPDATE code_repos SET ${sql.join(sets)}
      WHERE org_id = ${this.orgId} AND id = ${id} RETURNING ${REPO_COLUMNS}`.execute(this.tx);
    return r.rows[0] === undefined ? undefined : toRepo(r.rows[0]);
  }

  async deleteRepo(id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const r = await sql`DELETE FROM code_repos WHERE org_id = ${this.orgId} AND id = ${id}`.execute(this.tx);
    return Number(r.numAffectedRows ?? 0) > 0;
  }

  async countRepo(id: string): Promise<RepoCounts> {
    const r = await sql<{ files: number; symbols: number; edges: number; unresolved: number }>`SELECT
      (SELECT count(*)::int FROM code_files WHERE org_id = ${this.orgId} AND repo_id = ${id}) AS files,
      (SELECT count(*)::int FROM code_symbols WHERE org_id = ${this.orgId} AND repo_id = ${id}) AS symbols,
      (SELECT count(*)::int FROM code_edges WHERE org_id = ${this.orgId} AND repo_id = ${id}) AS edges,
      (SELECT count(*)::int FROM code_edges WHERE org_id = ${this.orgId} AND repo_id = ${id} AND dst_id IS NULL)
        AS unresolved`.execute(this.tx);
    const row = r.rows[0];
    return {
      files: row?.files ?? 0,
      symbols: row?.symbols ?? 0,
      edges: row?.edges ?? 0,
      unresolvedEdges: row?.unresolved ?? 0,
    };
  }

  async findFiles(repoId: string): Promise<StoredFile[]> {
    const r = await sql<{ id: string; path: string; content_hash: string }>`
      SELECT id, path, content_hash FROM code_files WHERE org_id = ${this.orgId} AND repo_id = ${repoId}`.execute(
      this.tx,
    );
    return r.rows.map((x) => ({ id: x.id, path: x.path, contentHash: x.content_hash }));
  }

  /** Edges from elsewhere into these files or their symbols become unresolved (their names stay). */
  private async unlinkIncoming(fileIds: readonly string[]): Promise<void> {
    await sql`UPDATE code_edges SET dst_kind = NULL, dst_id = NULL, confidence = ${CONFIDENCE.unresolved}
      WHERE org_id = ${this.orgId} AND NOT (file_id = ANY(${fileIds}::uuid[])) AND (
        (dst_kind = 'file' AND dst_id = ANY(${fileIds}::uuid[]))
        OR (dst_kind = 'symbol' AND dst_id IN (
          SELECT id FROM code_symbols WHERE org_id = ${this.orgId} AND file_id = ANY(${fileIds}::uuid[]))))`.execute(
      this.tx,
    );
  }

  async writeFiles(repoId: string, files: readonly IndexedFile[]): Promise<void> {
    if (files.length === 0) return;
    const ids = files.map((f) => f.id);
    await this.unlinkIncoming(ids);
    await sql`DELETE FROM code_edges WHERE org_id = ${this.orgId} AND file_id = ANY(${ids}::uuid[])`.execute(this.tx);
    await sql`DELETE FROM code_symbols WHERE org_id = ${this.orgId} AND file_id = ANY(${ids}::uuid[])`.execute(this.tx);
    for (const batch of chunks(files, INSERT_BATCH)) {
      const values = batch.map(
        (f) => sql`(${this.orgId}, ${repoId}, ${f.id}, ${f.path}, ${f.language}, ${f.contentHash}, ${f.size}, now())`,
      );
      await sql`INSERT INTO code_files (org_id, repo_id, id, path, language, content_hash, size, indexed_at)
        VALUES ${sql.join(values)}
        ON CONFLICT (org_id, id) DO UPDATE SET language = excluded.language,
          content_hash = excluded.content_hash, size = excluded.size, indexed_at = excluded.indexed_at`.execute(
        this.tx,
      );
    }
    const symbols = files.flatMap((f) => f.symbols.map((s) => ({ f, s })));
    for (const batch of chunks(symbols, INSERT_BATCH)) {
      await sql`INSERT INTO code_symbols (org_id, repo_id, file_id, id, parent_id, scip_symbol, descriptor, kind,
          name, qualified_name, start_line, start_col, end_line, end_col, name_line, name_col, signature, doc,
          language, exported)
        VALUES ${sql.join(batch.map(({ f, s }) => this.symbolValues(repoId, f, s)))}`.execute(this.tx);
    }
    const edges = files.flatMap((f) => f.edges.map((e) => ({ f, e })));
    for (const batch of chunks(edges, INSERT_BATCH)) {
      await sql`INSERT INTO code_edges (org_id, repo_id, file_id, kind, src_kind, src_id, dst_kind, dst_id, dst_name,
          dst_module, hint_file_id, confidence, start_line, start_col, end_line, end_col)
        VALUES ${sql.join(batch.map(({ f, e }) => this.edgeValues(repoId, f.id, e)))}`.execute(this.tx);
    }
  }

  private symbolValues(repoId: string, f: IndexedFile, s: SymbolRow): RawBuilder<unknown> {
    return sql`(${this.orgId}, ${repoId}, ${f.id}, ${s.id}, ${s.parentId}, ${s.scipSymbol}, ${s.descriptor},
      ${s.kind}, ${s.name}, ${s.qualifiedName}, ${s.span.startLine}, ${s.span.startColumn}, ${s.span.endLine},
      ${s.span.endColumn}, ${s.nameSpan.startLine}, ${s.nameSpan.startColumn}, ${s.signature}, ${s.doc},
      ${f.language}, ${s.exported})`;
  }

  private edgeValues(repoId: string, fileId: string, e: EdgeRow): RawBuilder<unknown> {
    return sql`(${this.orgId}, ${repoId}, ${fileId}, ${e.kind}, ${e.src.kind}, ${e.src.id}, ${e.dst?.kind ?? null},
      ${e.dst?.id ?? null}, ${e.dstName}, ${e.dstModule ?? null}, ${e.hintFileId ?? null}, ${e.confidence},
      ${e.span?.startLine ?? null}, ${e.span?.startColumn ?? null}, ${e.span?.endLine ?? null},
      ${e.span?.endColumn ?? null})`;
  }

  async deleteFiles(repoId: string, fileIds: readonly string[]): Promise<void> {
    if (fileIds.length === 0) return;
    await this.unlinkIncoming(fileIds);
    await sql`DELETE FROM code_files WHERE org_id = ${this.orgId} AND repo_id = ${repoId}
      AND id = ANY(${fileIds}::uuid[])`.execute(this.tx);
  }

  async findUnresolvedImports(repoId: string): Promise<UnresolvedImport[]> {
    const r = await sql<{ file_id: string; path: string; language: string; dst_name: string }>`
      SELECT DISTINCT e.file_id, f.path, f.language, e.dst_name FROM code_edges e
        JOIN code_files f ON f.org_id = e.org_id AND f.id = e.file_id
      WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.kind = 'IMPORTS' AND e.dst_id IS NULL
      ORDER BY f.path, e.dst_name`.execute(this.tx);
    return r.rows.map((x) => ({
      fileId: x.file_id,
      fromPath: x.path,
      language: x.language as CodeLanguage,
      specifier: x.dst_name,
    }));
  }

  async resolveImports(repoId: string, targets: readonly ImportTarget[]): Promise<void> {
    for (const batch of chunks(targets, INSERT_BATCH)) {
      const values = sql.join(
        batch.map((t) => sql`(${t.fileId}::uuid, ${t.specifier}::text, ${t.targetFileId}::uuid)`),
      );
      await sql`UPDATE code_edges e SET dst_kind = 'file', dst_id = v.target, confidence = ${CONFIDENCE.exact}
        FROM (VALUES ${values}) AS v (file_id, specifier, target)
        WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.file_id = v.file_id AND e.kind = 'IMPORTS'
          AND e.dst_id IS NULL AND e.dst_name = v.specifier`.execute(this.tx);
      await sql`UPDATE code_edges e SET hint_file_id = v.target
        FROM (VALUES ${values}) AS v (file_id, specifier, target)
        WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.file_id = v.file_id AND e.kind <> 'IMPORTS'
          AND e.dst_id IS NULL AND e.dst_module = v.specifier`.execute(this.tx);
    }
  }

  async resolveReferences(repoId: string, recheckGuesses: boolean): Promise<number> {
    const org = this.orgId;
    if (recheckGuesses) {
      await sql`UPDATE code_edges SET dst_kind = NULL, dst_id = NULL, confidence = ${CONFIDENCE.unresolved}
        WHERE org_id = ${org} AND repo_id = ${repoId} AND dst_id IS NOT NULL
          AND confidence <= ${CONFIDENCE.uniqueName}`.execute(this.tx);
    }
    // Imported names: in the file the import resolved to, top-level and exported definitions first.
    const imported = await sql`UPDATE code_edges e SET dst_kind = 'symbol', dst_id = m.symbol_id,
        confidence = ${CONFIDENCE.imported}
      FROM (
        SELECT DISTINCT ON (x.id) x.id AS edge_id, s.id AS symbol_id
        FROM code_edges x JOIN code_symbols s
          ON s.org_id = x.org_id AND s.file_id = x.hint_file_id AND s.name = x.dst_name
        WHERE x.org_id = ${org} AND x.repo_id = ${repoId} AND x.dst_id IS NULL AND x.hint_file_id IS NOT NULL
          AND x.kind <> 'IMPORTS'
        ORDER BY x.id, (s.parent_id IS NULL) DESC, s.exported DESC, s.start_line
      ) m
      WHERE e.org_id = ${org} AND e.id = m.edge_id`.execute(this.tx);
    // Names defined exactly once in the repository; never for names imported from external modules.
    const unique = await sql`UPDATE code_edges e SET dst_kind = 'symbol', dst_id = u.symbol_id,
        confidence = ${CONFIDENCE.uniqueName}
      FROM (
        SELECT s.name, (array_agg(s.id))[1] AS symbol_id FROM code_symbols s
        WHERE s.org_id = ${org} AND s.repo_id = ${repoId} AND s.name IN (
          SELECT dst_name FROM code_edges WHERE org_id = ${org} AND repo_id = ${repoId} AND dst_id IS NULL)
        GROUP BY s.name HAVING count(*) = 1
      ) u
      WHERE e.org_id = ${org} AND e.repo_id = ${repoId} AND e.dst_id IS NULL AND e.dst_name = u.name
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')
        AND (e.dst_module IS NULL OR e.hint_file_id IS NOT NULL)`.execute(this.tx);
    return Number(imported.numAffectedRows ?? 0) + Number(unique.numAffectedRows ?? 0);
  }

  async findSymbols(q: SymbolQuery): Promise<CodeSymbol[]> {
    const lower = q.q.toLowerCase();
    const prefix = `${likeEscape(lower)}%`;
    const contains = `%${likeEscape(lower)}%`;
    const filters: RawBuilder<unknown>[] = [sql`s.org_id = ${this.orgId}`];
    if (q.repoId !== undefined) filters.push(sql`s.repo_id = ${isUuid(q.repoId) ? q.repoId : null}`);
    if (q.kind !== undefined) filters.push(sql`s.kind = ${q.kind}`);
    const r = await sql<SymbolRowDb>`
      SELECT ${SYMBOL_SELECT} FROM code_symbols s
        JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
        JOIN code_repos r ON r.org_id = s.org_id AND r.id = s.repo_id
      WHERE ${sql.join(filters, sql` AND `)}
        AND (lower(s.name) LIKE ${contains} OR lower(s.qualified_name) = ${lower})
      ORDER BY CASE WHEN lower(s.name) = ${lower} OR lower(s.qualified_name) = ${lower} THEN 0
                    WHEN lower(s.name) LIKE ${prefix} THEN 1 ELSE 2 END,
        length(s.name), s.name, f.path, s.start_line
      LIMIT ${q.limit}`.execute(this.tx);
    return r.rows.map(toSymbol);
  }

  async findDefinitions(match: SymbolMatch, repoId: string | undefined, limit: number): Promise<CodeSymbol[]> {
    const where: RawBuilder<unknown>[] = [sql`s.org_id = ${this.orgId}`];
    if (repoId !== undefined) where.push(sql`s.repo_id = ${isUuid(repoId) ? repoId : null}`);
    const run = async (cond: RawBuilder<unknown>) =>
      (
        await sql<SymbolRowDb>`SELECT ${SYMBOL_SELECT} FROM code_symbols s
          JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
          JOIN code_repos r ON r.org_id = s.org_id AND r.id = s.repo_id
        WHERE ${sql.join([...where, cond], sql` AND `)}
        ORDER BY (s.parent_id IS NULL) DESC, s.exported DESC, f.path, s.start_line LIMIT ${limit}`.execute(this.tx)
      ).rows.map(toSymbol);
    const v = match.value;
    switch (match.by) {
      case 'scip': {
        const exact = await run(sql`s.scip_symbol = ${v}`);
        // Also accept ids written without SCIP's backtick escapes (`src/util.ts/parse().`).
        return exact.length > 0 ? exact : run(sql`replace(s.scip_symbol, '\`', '') = ${v.replaceAll('`', '')}`);
      }
      case 'qualified': {
        const exact = await run(sql`s.qualified_name = ${v}`);
        return exact.length > 0 ? exact : run(sql`lower(s.qualified_name) = ${v.toLowerCase()}`);
      }
      case 'name': {
        const exact = await run(sql`s.name = ${v}`);
        return exact.length > 0 ? exact : run(sql`lower(s.name) = ${v.toLowerCase()}`);
      }
    }
  }

  async findReferences(symbolIds: readonly string[], limit: number): Promise<CodeReference[]> {
    const ids = symbolIds.filter(isUuid);
    if (ids.length === 0) return [];
    const r = await sql<{
      kind: string;
      confidence: number;
      repo_id: string;
      path: string;
      start_line: number | null;
      start_col: number | null;
      end_line: number | null;
      end_col: number | null;
      src_kind: string;
      enc_id: string | null;
      enc_name: string | null;
      enc_qname: string | null;
      t_id: string;
      t_name: string;
      t_qname: string;
      t_path: string;
    }>`
      SELECT e.kind, e.confidence, e.repo_id, f.path, e.start_line, e.start_col, e.end_line, e.end_col, e.src_kind,
        enc.id AS enc_id, enc.name AS enc_name, enc.qualified_name AS enc_qname,
        t.id AS t_id, t.name AS t_name, t.qualified_name AS t_qname, tf.path AS t_path
      FROM code_edges e
        JOIN code_files f ON f.org_id = e.org_id AND f.id = e.file_id
        JOIN code_symbols t ON t.org_id = e.org_id AND t.id = e.dst_id
        JOIN code_files tf ON tf.org_id = t.org_id AND tf.id = t.file_id
        LEFT JOIN code_symbols enc ON e.src_kind = 'symbol' AND enc.org_id = e.org_id AND enc.id = e.src_id
      WHERE e.org_id = ${this.orgId} AND e.dst_kind = 'symbol' AND e.dst_id = ANY(${ids}::uuid[])
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')
      ORDER BY e.confidence DESC, f.path, e.start_line, e.start_col
      LIMIT ${limit}`.execute(this.tx);
    return r.rows.map((x) => ({
      kind: x.kind as EdgeKind,
      confidence: Math.round(Number(x.confidence) * 100) / 100,
      repoId: x.repo_id,
      path: x.path,
      span:
        x.start_line === null
          ? null
          : {
              startLine: x.start_line,
              startColumn: x.start_col ?? 0,
              endLine: x.end_line ?? x.start_line,
              endColumn: x.end_col ?? 0,
            },
      enclosing: x.enc_id === null ? null : { id: x.enc_id, name: x.enc_name ?? '', qualifiedName: x.enc_qname ?? '' },
      target: { id: x.t_id, name: x.t_name, qualifiedName: x.t_qname, path: x.t_path },
    }));
  }
}
