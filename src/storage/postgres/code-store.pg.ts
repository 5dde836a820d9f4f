import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';
import type {
  CodeStore,
  EdgeRow,
  EdgeTargetUpdate,
  ImportTarget,
  IndexedFile,
  NewRepoRow,
  PackageRow,
  ReferenceSite,
  RepoPatch,
  StoredFile,
  SymbolAnchor,
  UnresolvedImport,
} from '../../ports/code-store.ts';
import {
  CONFIDENCE,
  EMPTY_PROGRESS,
  type CodeReference,
  type CodeSymbol,
  type DependencyKind,
  type EdgeKind,
  type IndexProgress,
  type Repo,
  type RepoCounts,
  type RepoDependency,
  type RepoSourceKind,
  type RepoStatus,
  type SymbolMatch,
  type SymbolQuery,
} from '../../domain/code/code.types.ts';
import {
  symbolNode,
  type GraphLevel,
  type GraphNode,
  type GraphStep,
  type GraphStepQuery,
  type ReferenceGraph,
} from '../../domain/code/code-graph.types.ts';
import { scipSymbolName } from '../../domain/code/scip.ts';
import type { DB } from './schema.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isUuid = (s: string): boolean => UUID_RE.test(s);

/** Rows per multi-row INSERT: ~20 columns each stays far below the 65,535-parameter limit. */
const INSERT_BATCH = 500;

/** The first key of the per-org registration lock (the second is a hash of the org id). */
const REPO_REGISTRY_LOCK_CLASS = 4_203_172;

/** Rows per bulk statement (`unnest` of one array per column, or `jsonRecordset`): only size bounds it. */
const UNNEST_BATCH = 10_000;

/**
 * Rows as a set (`json_to_recordset`), sent as one parameter of raw UTF-8
 * JSON: node-postgres and the PGlite worker pass bytes through in binary
 * format, which for `text` is the text itself. Neither client then escapes
 * tens of thousands of values into array literals (PGlite measures each
 * string twice in JavaScript), and the server parses one JSON document.
 * `columns` names the record's fields and their types, e.g. `f uuid, n text`.
 */
const jsonRecordset = (rows: readonly object[], columns: string): RawBuilder<unknown> =>
  sql`json_to_recordset(${Buffer.from(JSON.stringify(rows))}::text::json) AS r (${sql.raw(columns)})`;

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

/**
 * Edges a symbol-level traversal follows: references, inheritance and imports
 * out of top-level code; containment (a member's change is its type's) comes
 * from code_symbols.parent_id.
 */
const SYMBOL_GRAPH_KINDS = sql.raw(`('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS', 'IMPORTS')`);
/** Edges between two files' contents (and, across repositories, between packages). */
const FILE_GRAPH_KINDS = sql.raw(`('IMPORTS', 'CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')`);

interface StepRowDb {
  from_id: string;
  to_id: string;
  to_kind: string;
  kind: string;
  confidence: number;
}

const toFileNode = (f: { id: string; path: string; repo_id: string; repo_name: string }): GraphNode => ({
  kind: 'file',
  id: f.id,
  name: f.path,
  qualifiedName: f.path,
  symbolKind: null,
  repoId: f.repo_id,
  repoName: f.repo_name,
  path: f.path,
  span: null,
});

const repoNode = (r: Repo): GraphNode => ({
  kind: 'package',
  id: r.id,
  name: r.name,
  qualifiedName: r.package === null ? r.name : `${r.package.manager} ${r.package.name} ${r.package.version}`,
  symbolKind: null,
  repoId: r.id,
  repoName: r.name,
  path: null,
  span: null,
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

  async lockRepoCount(): Promise<number> {
    // Two-key advisory locks never meet the queue's one-key lock; two orgs whose ids hash alike only queue together.
    await sql`SELECT pg_advisory_xact_lock(${REPO_REGISTRY_LOCK_CLASS}, hashtext(${this.orgId}))`.execute(this.tx);
    const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM code_repos
      WHERE org_id = ${this.orgId}`.execute(this.tx);
    return r.rows[0]?.n ?? 0;
  }

  async sumOtherReposBytes(repoId: string): Promise<number> {
    // One pass over the org's rows of code_files, found by its (org_id, repo_id, path) key.
    const r = await sql<{ n: string }>`SELECT coalesce(sum(size), 0)::bigint AS n FROM code_files
      WHERE org_id = ${this.orgId} AND repo_id <> ${repoId}`.execute(this.tx);
    return Number(r.rows[0]?.n ?? 0);
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
    // References from other repositories into this one fall back to unresolved (names kept).
    await sql`UPDATE code_edges SET dst_kind = NULL, dst_id = NULL, confidence = ${CONFIDENCE.unresolved}
      WHERE org_id = ${this.orgId} AND repo_id <> ${id} AND dst_id IN (
        SELECT s.id FROM code_symbols s WHERE s.org_id = ${this.orgId} AND s.repo_id = ${id}
        UNION ALL SELECT f.id FROM code_files f WHERE f.org_id = ${this.orgId} AND f.repo_id = ${id})`.execute(this.tx);
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
    const r = await sql<{ id: string; path: string; content_hash: string; size: number; mtime_ms: string | null }>`
      SELECT id, path, content_hash, size, mtime_ms FROM code_files
      WHERE org_id = ${this.orgId} AND repo_id = ${repoId}`.execute(this.tx);
    return r.rows.map((x) => ({
      id: x.id,
      path: x.path,
      contentHash: x.content_hash,
      size: x.size,
      mtimeMs: x.mtime_ms === null ? null : Number(x.mtime_ms),
    }));
  }

  async touchFiles(repoId: string, files: ReadonlyArray<{ id: string; mtimeMs: number | null }>): Promise<void> {
    for (const batch of chunks(files, UNNEST_BATCH)) {
      await sql`UPDATE code_files f SET mtime_ms = v.mtime_ms
        FROM unnest(${batch.map((x) => x.id)}::uuid[], ${batch.map((x) => x.mtimeMs)}::bigint[]) AS v (id, mtime_ms)
        WHERE f.org_id = ${this.orgId} AND f.repo_id = ${repoId} AND f.id = v.id`.execute(this.tx);
    }
  }

  /** Edges from elsewhere into these files or their symbols become unresolved (their names stay). */
  private async unlinkIncoming(fileIds: readonly string[]): Promise<void> {
    // One list of targets (the files and their symbols: ids are unique across both), so that the edges
    // are found through their dst_id index; an OR of the two kinds read all the org's edges (30 ms for 20k).
    await sql`UPDATE code_edges SET dst_kind = NULL, dst_id = NULL, confidence = ${CONFIDENCE.unresolved}
      WHERE org_id = ${this.orgId} AND NOT (file_id = ANY(${fileIds}::uuid[])) AND dst_id IN (
        SELECT unnest(${fileIds}::uuid[])
        UNION ALL
        SELECT id FROM code_symbols WHERE org_id = ${this.orgId} AND file_id = ANY(${fileIds}::uuid[]))`.execute(
      this.tx,
    );
  }

  /**
   * Rows go in as one JSON recordset per table and batch (`jsonRecordset`):
   * one parameter per statement instead of one per value, which is what
   * parsing and binding cost on a multi-row VALUES list.
   */
  async writeFiles(repoId: string, files: readonly IndexedFile[]): Promise<void> {
    if (files.length === 0) return;
    const replaced = files.filter((f) => f.replaces).map((f) => f.id);
    if (replaced.length > 0) {
      await this.unlinkIncoming(replaced);
      await sql`DELETE FROM code_edges WHERE org_id = ${this.orgId} AND file_id = ANY(${replaced}::uuid[])`.execute(
        this.tx,
      );
      await sql`DELETE FROM code_symbols WHERE org_id = ${this.orgId} AND file_id = ANY(${replaced}::uuid[])`.execute(
        this.tx,
      );
    }
    const fileRows = jsonRecordset(
      files.map((f) => ({ i: f.id, p: f.path, l: f.language, h: f.contentHash, s: f.size, m: f.mtimeMs })),
      'i uuid, p text, l text, h text, s int, m bigint',
    );
    await sql`INSERT INTO code_files (org_id, repo_id, id, path, language, content_hash, size, mtime_ms, indexed_at)
      SELECT ${this.orgId}::uuid, ${repoId}::uuid, r.*, now() FROM ${fileRows}
      ON CONFLICT (org_id, id) DO UPDATE SET language = excluded.language, content_hash = excluded.content_hash,
        size = excluded.size, mtime_ms = excluded.mtime_ms, indexed_at = excluded.indexed_at`.execute(this.tx);
    const symbols = files.flatMap((f) =>
      f.symbols.map((x) => ({
        f: f.id,
        i: x.id,
        p: x.parentId,
        s: x.scipSymbol,
        d: x.descriptor,
        k: x.kind,
        n: x.name,
        q: x.qualifiedName,
        sl: x.span.startLine,
        sc: x.span.startColumn,
        el: x.span.endLine,
        ec: x.span.endColumn,
        nl: x.nameSpan.startLine,
        nc: x.nameSpan.startColumn,
        g: x.signature,
        o: x.doc,
        l: f.language,
        x: x.exported,
      })),
    );
    for (const b of chunks(symbols, UNNEST_BATCH)) {
      const rows = jsonRecordset(
        b,
        'f uuid, i uuid, p uuid, s text, d text, k text, n text, q text, sl int, sc int, el int, ec int, nl int, ' +
          'nc int, g text, o text, l text, x boolean',
      );
      await sql`INSERT INTO code_symbols (org_id, repo_id, file_id, id, parent_id, scip_symbol, descriptor, kind,
          name, qualified_name, start_line, start_col, end_line, end_col, name_line, name_col, signature, doc,
          language, exported)
        SELECT ${this.orgId}::uuid, ${repoId}::uuid, r.* FROM ${rows}`.execute(this.tx);
    }
    const edges = files.flatMap((f) => f.edges.map((edge) => ({ fileId: f.id, edge })));
    await this.insertEdges(repoId, edges);
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
    for (const batch of chunks(targets, UNNEST_BATCH)) {
      const v = sql`unnest(${batch.map((t) => t.fileId)}::uuid[], ${batch.map((t) => t.specifier)}::text[],
        ${batch.map((t) => t.targetFileId)}::uuid[]) AS v (file_id, specifier, target)`;
      await sql`UPDATE code_edges e SET dst_kind = 'file', dst_id = v.target, confidence = ${CONFIDENCE.exact}
        FROM ${v}
        WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.file_id = v.file_id AND e.kind = 'IMPORTS'
          AND e.dst_id IS NULL AND e.dst_name = v.specifier`.execute(this.tx);
      await sql`UPDATE code_edges e SET hint_file_id = v.target
        FROM ${v}
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
    // MATERIALIZED: on a fresh repository (no statistics) the planner otherwise nests the aggregate
    // inside a loop over the edges and recomputes it per edge — minutes for a 150-file repository.
    const unique = await sql`WITH u AS MATERIALIZED (
        SELECT s.name, (array_agg(s.id))[1] AS symbol_id FROM code_symbols s
        WHERE s.org_id = ${org} AND s.repo_id = ${repoId} AND s.name IN (
          SELECT dst_name FROM code_edges WHERE org_id = ${org} AND repo_id = ${repoId} AND dst_id IS NULL)
        GROUP BY s.name HAVING count(*) = 1
      )
      UPDATE code_edges e SET dst_kind = 'symbol', dst_id = u.symbol_id, confidence = ${CONFIDENCE.uniqueName}
      FROM u
      WHERE e.org_id = ${org} AND e.repo_id = ${repoId} AND e.dst_id IS NULL AND e.dst_name = u.name
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')
        AND (e.dst_module IS NULL OR e.hint_file_id IS NOT NULL)`.execute(this.tx);
    return Number(imported.numAffectedRows ?? 0) + Number(unique.numAffectedRows ?? 0);
  }

  async replacePackages(repoId: string, rows: readonly PackageRow[]): Promise<void> {
    await sql`DELETE FROM code_packages WHERE org_id = ${this.orgId} AND repo_id = ${repoId}`.execute(this.tx);
    for (const batch of chunks(rows, INSERT_BATCH)) {
      const values = batch.map(
        (p) => sql`(${this.orgId}, ${repoId}, ${p.role}, ${p.manager}, ${p.name}, ${p.version}, ${p.dependencyKind},
          ${p.dir}, ${p.entryPath})`,
      );
      await sql`INSERT INTO code_packages (org_id, repo_id, role, manager, name, version, dep_kind, dir, entry_path)
        VALUES ${sql.join(values)}`.execute(this.tx);
    }
  }

  async findRepoDependencies(repoId?: string): Promise<RepoDependency[]> {
    const scope =
      repoId === undefined
        ? sql`true`
        : isUuid(repoId)
          ? sql`(d.repo_id = ${repoId} OR p.repo_id = ${repoId})`
          : sql`false`;
    const r = await sql<{
      from_id: string;
      from_name: string;
      to_id: string;
      to_name: string;
      manager: string;
      name: string;
      version: string;
      dep_kind: string | null;
    }>`
      SELECT DISTINCT ON (d.repo_id, p.repo_id, d.manager, d.name)
        d.repo_id AS from_id, fr.name AS from_name, p.repo_id AS to_id, tr.name AS to_name, d.manager, d.name,
        d.version, d.dep_kind
      FROM code_packages d
        JOIN code_packages p ON p.org_id = d.org_id AND p.role = 'provides' AND p.manager = d.manager
          AND p.name = d.name AND p.repo_id <> d.repo_id
        JOIN code_repos fr ON fr.org_id = d.org_id AND fr.id = d.repo_id
        JOIN code_repos tr ON tr.org_id = p.org_id AND tr.id = p.repo_id
      WHERE d.org_id = ${this.orgId} AND d.role = 'depends' AND ${scope}
      ORDER BY d.repo_id, p.repo_id, d.manager, d.name,
        CASE d.dep_kind WHEN 'runtime' THEN 0 WHEN 'peer' THEN 1 WHEN 'optional' THEN 2 ELSE 3 END`.execute(this.tx);
    return r.rows.map((x) => ({
      kind: 'DEPENDS_ON' as const,
      fromRepoId: x.from_id,
      fromRepoName: x.from_name,
      toRepoId: x.to_id,
      toRepoName: x.to_name,
      manager: x.manager,
      package: x.name,
      version: x.version,
      dependencyKind: (x.dep_kind ?? 'runtime') as DependencyKind,
    }));
  }

  async resolveCrossRepoReferences(repoId: string): Promise<number> {
    const org = this.orgId;
    // Guesses into or out of this repository are made again: either side may have changed.
    await sql`UPDATE code_edges e SET dst_kind = NULL, dst_id = NULL, confidence = ${CONFIDENCE.unresolved}
      FROM code_symbols s
      WHERE e.org_id = ${org} AND e.dst_kind = 'symbol' AND e.dst_module IS NOT NULL AND e.hint_file_id IS NULL
        AND s.org_id = e.org_id AND s.id = e.dst_id AND s.repo_id <> e.repo_id AND (e.repo_id = ${repoId} OR s.repo_id = ${repoId})
        AND e.confidence < ${CONFIDENCE.exact}`.execute(this.tx);
    const r = await sql`UPDATE code_edges e SET dst_kind = 'symbol', dst_id = m.symbol_id, confidence = m.confidence
      FROM (
        SELECT DISTINCT ON (c.edge_id) c.edge_id, c.symbol_id,
          CASE WHEN c.rank < 2 THEN ${CONFIDENCE.crossRepoEntry}::real ELSE ${CONFIDENCE.crossRepoName}::real END
            AS confidence
        FROM (
          SELECT x.id AS edge_id, s.id AS symbol_id,
            CASE WHEN s.file_id = ef.id THEN 0
              WHEN EXISTS (SELECT 1 FROM code_edges i WHERE i.org_id = x.org_id AND i.file_id = ef.id
                AND i.kind = 'IMPORTS' AND i.dst_kind = 'file' AND i.dst_id = s.file_id) THEN 1
              ELSE 2 END AS rank,
            count(*) OVER (PARTITION BY x.id) AS n
          FROM code_edges x
            JOIN code_packages p ON p.org_id = x.org_id AND p.role = 'provides' AND p.repo_id <> x.repo_id
              AND (x.dst_module = p.name OR starts_with(x.dst_module, p.name || '/'))
            JOIN code_symbols s ON s.org_id = p.org_id AND s.repo_id = p.repo_id AND s.name = x.dst_name
              AND s.exported AND s.parent_id IS NULL
            LEFT JOIN code_files ef ON ef.org_id = p.org_id AND ef.repo_id = p.repo_id AND ef.path = p.entry_path
          WHERE x.org_id = ${org} AND x.dst_id IS NULL AND x.dst_module IS NOT NULL AND x.hint_file_id IS NULL
            AND x.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')
            AND (x.repo_id = ${repoId} OR p.repo_id = ${repoId})
        ) c
        WHERE c.rank < 2 OR c.n = 1
        ORDER BY c.edge_id, c.rank
      ) m
      WHERE e.org_id = ${org} AND e.id = m.edge_id`.execute(this.tx);
    return Number(r.numAffectedRows ?? 0);
  }

  async findReferenceSites(repoId: string, languages: readonly CodeLanguage[]): Promise<ReferenceSite[]> {
    const r = await sql<{
      id: string;
      path: string;
      start_line: number;
      start_col: number;
      end_line: number;
      end_col: number;
      dst_id: string | null;
      dst_repo: string | null;
      confidence: number;
    }>`
      SELECT e.id::text AS id, f.path, e.start_line, e.start_col, e.end_line, e.end_col, e.dst_id,
        s.repo_id AS dst_repo, e.confidence
      FROM code_edges e
        JOIN code_files f ON f.org_id = e.org_id AND f.id = e.file_id
        LEFT JOIN code_symbols s ON e.dst_kind = 'symbol' AND s.org_id = e.org_id AND s.id = e.dst_id
      WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.start_line IS NOT NULL
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS') AND f.language = ANY(${[...languages]}::text[])
      ORDER BY f.path, e.start_line, e.start_col`.execute(this.tx);
    return r.rows.map((x) => ({
      edgeId: x.id,
      path: x.path,
      span: { startLine: x.start_line, startColumn: x.start_col, endLine: x.end_line, endColumn: x.end_col },
      dstId: x.dst_id,
      dstRepoId: x.dst_repo,
      confidence: Number(x.confidence),
    }));
  }

  async findSymbolAnchors(repoId: string): Promise<SymbolAnchor[]> {
    const r = await sql<{
      id: string;
      file_id: string;
      path: string;
      name: string;
      name_line: number;
      name_col: number;
      start_line: number;
      start_col: number;
      end_line: number;
      end_col: number;
    }>`
      SELECT s.id, s.file_id, f.path, s.name, s.name_line, s.name_col, s.start_line, s.start_col, s.end_line, s.end_col
      FROM code_symbols s JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
      WHERE s.org_id = ${this.orgId} AND s.repo_id = ${repoId}`.execute(this.tx);
    return r.rows.map((x) => ({
      id: x.id,
      fileId: x.file_id,
      span: { startLine: x.start_line, startColumn: x.start_col, endLine: x.end_line, endColumn: x.end_col },
      path: x.path,
      name: x.name,
      line: x.name_line,
      column: x.name_col,
    }));
  }

  async insertEdges(repoId: string, edges: ReadonlyArray<{ fileId: string; edge: EdgeRow }>): Promise<void> {
    for (const b of chunks(edges, UNNEST_BATCH)) {
      const rows = jsonRecordset(
        b.map(({ fileId, edge: e }) => ({
          f: fileId,
          k: e.kind,
          sk: e.src.kind,
          si: e.src.id,
          dk: e.dst?.kind ?? null,
          di: e.dst?.id ?? null,
          n: e.dstName,
          m: e.dstModule ?? null,
          h: e.hintFileId ?? null,
          c: e.confidence,
          sl: e.span?.startLine ?? null,
          sc: e.span?.startColumn ?? null,
          el: e.span?.endLine ?? null,
          ec: e.span?.endColumn ?? null,
        })),
        'f uuid, k text, sk text, si uuid, dk text, di uuid, n text, m text, h uuid, c real, sl int, sc int, el int, ec int',
      );
      await sql`INSERT INTO code_edges (org_id, repo_id, file_id, kind, src_kind, src_id, dst_kind, dst_id, dst_name,
          dst_module, hint_file_id, confidence, start_line, start_col, end_line, end_col)
        SELECT ${this.orgId}::uuid, ${repoId}::uuid, r.* FROM ${rows}`.execute(this.tx);
    }
  }

  async updateEdgeTargets(repoId: string, updates: readonly EdgeTargetUpdate[]): Promise<void> {
    for (const batch of chunks(updates, UNNEST_BATCH)) {
      await sql`UPDATE code_edges e SET dst_id = v.dst, dst_kind = CASE WHEN v.dst IS NULL THEN NULL ELSE 'symbol' END,
          confidence = v.confidence
        FROM unnest(${batch.map((u) => u.edgeId)}::bigint[], ${batch.map((u) => u.dstId)}::uuid[],
          ${batch.map((u) => u.confidence)}::real[]) AS v (id, dst, confidence)
        WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.id = v.id`.execute(this.tx);
    }
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
    // Ids and qualified names are found through the index on lower(name) (migration 0016).
    const named = (names: readonly string[]) => sql`lower(s.name) = ANY(${names.map((n) => n.toLowerCase())}::text[])`;
    switch (match.by) {
      case 'scip': {
        const name = scipSymbolName(v);
        const exact = await run(
          name === undefined ? sql`s.scip_symbol = ${v}` : sql`${named([name])} AND s.scip_symbol = ${v}`,
        );
        // Also accept ids written without SCIP's backtick escapes (`src/util.ts/parse().`).
        return exact.length > 0 ? exact : run(sql`replace(s.scip_symbol, '\`', '') = ${v.replaceAll('`', '')}`);
      }
      case 'qualified': {
        // A qualified name ends with the symbol's name after a dot, and names may hold dots (`namespace A.B`).
        const names = v.split('.').map((_seg, i, segs) => segs.slice(i).join('.'));
        const exact = await run(sql`${named(names)} AND s.qualified_name = ${v}`);
        return exact.length > 0 ? exact : run(sql`${named(names)} AND lower(s.qualified_name) = ${v.toLowerCase()}`);
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

  async findFilesByPath(filePath: string, repoId: string | undefined): Promise<GraphNode[]> {
    if (repoId !== undefined && !isUuid(repoId)) return [];
    const r = await sql<{ id: string; path: string; repo_id: string; repo_name: string }>`
      SELECT f.id, f.path, f.repo_id, r.name AS repo_name FROM code_files f
        JOIN code_repos r ON r.org_id = f.org_id AND r.id = f.repo_id
      WHERE f.org_id = ${this.orgId} AND f.path = ${filePath}
        ${repoId === undefined ? sql`` : sql`AND f.repo_id = ${repoId}`}
      ORDER BY r.name, f.repo_id`.execute(this.tx);
    return r.rows.map(toFileNode);
  }

  async findGraphSteps(q: GraphStepQuery): Promise<GraphStep[]> {
    const ids = q.nodeIds.filter(isUuid);
    if (ids.length === 0) return [];
    const org = this.orgId;
    // real vs. double: 0.95 stored as real is below 0.95 as double, so the floor is compared as real.
    const floor = sql`(${q.minConfidence})::real`;
    const reverse = q.direction === 'dependents';
    let r: { rows: StepRowDb[] };
    if (q.level === 'symbol') {
      // CONTAINS is each symbol's parent_id (migration 0013), not an edge row.
      r = reverse
        ? await sql<StepRowDb>`SELECT e.dst_id AS from_id, e.src_id AS to_id, e.src_kind AS to_kind, e.kind,
              max(e.confidence) AS confidence
            FROM code_edges e
            WHERE e.org_id = ${org} AND e.dst_id = ANY(${ids}::uuid[]) AND e.kind IN ${SYMBOL_GRAPH_KINDS}
              AND e.confidence >= ${floor} AND e.src_id <> e.dst_id
            GROUP BY e.dst_id, e.src_id, e.src_kind, e.kind
            UNION ALL
            SELECT s.id, s.parent_id, 'symbol', 'CONTAINS', ${CONFIDENCE.exact}::real FROM code_symbols s
            WHERE s.org_id = ${org} AND s.id = ANY(${ids}::uuid[]) AND s.parent_id IS NOT NULL`.execute(this.tx)
        : await sql<StepRowDb>`SELECT e.src_id AS from_id, e.dst_id AS to_id, e.dst_kind AS to_kind, e.kind,
              max(e.confidence) AS confidence
            FROM code_edges e
            WHERE e.org_id = ${org} AND e.src_id = ANY(${ids}::uuid[]) AND e.dst_id IS NOT NULL
              AND e.kind IN ${SYMBOL_GRAPH_KINDS} AND e.confidence >= ${floor} AND e.src_id <> e.dst_id
            GROUP BY e.src_id, e.dst_id, e.dst_kind, e.kind
            UNION ALL
            SELECT s.parent_id, s.id, 'symbol', 'CONTAINS', ${CONFIDENCE.exact}::real FROM code_symbols s
            WHERE s.org_id = ${org} AND s.parent_id = ANY(${ids}::uuid[])`.execute(this.tx);
    } else if (q.level === 'file') {
      r = reverse
        ? await sql<StepRowDb>`SELECT x.from_id, x.to_id, 'file' AS to_kind, x.kind, max(x.confidence) AS confidence
            FROM (
              SELECT e.dst_id AS from_id, e.file_id AS to_id, e.kind, e.confidence FROM code_edges e
              WHERE e.org_id = ${org} AND e.dst_kind = 'file' AND e.dst_id = ANY(${ids}::uuid[])
                AND e.kind IN ${FILE_GRAPH_KINDS}
              UNION ALL
              SELECT t.file_id, e.file_id, e.kind, e.confidence FROM code_symbols t
                JOIN code_edges e ON e.org_id = t.org_id AND e.dst_id = t.id AND e.dst_kind = 'symbol'
              WHERE t.org_id = ${org} AND t.file_id = ANY(${ids}::uuid[]) AND e.kind IN ${FILE_GRAPH_KINDS}
            ) x
            WHERE x.from_id <> x.to_id AND x.confidence >= ${floor}
            GROUP BY x.from_id, x.to_id, x.kind`.execute(this.tx)
        : await sql<StepRowDb>`SELECT e.file_id AS from_id, coalesce(t.file_id, e.dst_id) AS to_id, 'file' AS to_kind,
              e.kind, max(e.confidence) AS confidence
            FROM code_edges e
              LEFT JOIN code_symbols t ON e.dst_kind = 'symbol' AND t.org_id = e.org_id AND t.id = e.dst_id
            WHERE e.org_id = ${org} AND e.file_id = ANY(${ids}::uuid[]) AND e.dst_id IS NOT NULL
              AND e.kind IN ${FILE_GRAPH_KINDS} AND e.confidence >= ${floor}
              AND e.file_id <> coalesce(t.file_id, e.dst_id)
            GROUP BY e.file_id, coalesce(t.file_id, e.dst_id), e.kind`.execute(this.tx);
    } else {
      const [fromCol, toCol] = reverse ? [sql`x.dst_repo`, sql`x.src_repo`] : [sql`x.src_repo`, sql`x.dst_repo`];
      r = await sql<StepRowDb>`SELECT ${fromCol} AS from_id, ${toCol} AS to_id, 'package' AS to_kind, x.kind,
          max(x.confidence) AS confidence
        FROM (
          SELECT e.repo_id AS src_repo, coalesce(t.repo_id, f.repo_id) AS dst_repo, e.kind, e.confidence
          FROM code_edges e
            LEFT JOIN code_symbols t ON e.dst_kind = 'symbol' AND t.org_id = e.org_id AND t.id = e.dst_id
            LEFT JOIN code_files f ON e.dst_kind = 'file' AND f.org_id = e.org_id AND f.id = e.dst_id
          WHERE e.org_id = ${org} AND e.dst_id IS NOT NULL AND e.kind IN ${FILE_GRAPH_KINDS}
            AND e.confidence >= ${floor}
          UNION ALL
          -- DEPENDS_ON: a declared dependency on a package another repository provides (migration 0011).
          SELECT d.repo_id, p.repo_id, 'DEPENDS_ON', ${CONFIDENCE.exact}::real FROM code_packages d
            JOIN code_packages p ON p.org_id = d.org_id AND p.role = 'provides' AND p.manager = d.manager
              AND p.name = d.name AND p.repo_id <> d.repo_id
          WHERE d.org_id = ${org} AND d.role = 'depends'
        ) x
        WHERE ${fromCol} = ANY(${ids}::uuid[]) AND x.src_repo <> x.dst_repo
        GROUP BY ${fromCol}, ${toCol}, x.kind`.execute(this.tx);
    }
    return r.rows.map((x) => ({
      from: x.from_id,
      to: x.to_id,
      toKind: x.to_kind === 'symbol' ? 'symbol' : x.to_kind === 'file' ? 'file' : 'package',
      kind: x.kind as EdgeKind,
      confidence: Math.round(Number(x.confidence) * 100) / 100,
    }));
  }

  async findGraphNodes(level: GraphLevel, nodeIds: readonly string[]): Promise<GraphNode[]> {
    const ids = nodeIds.filter(isUuid);
    if (ids.length === 0) return [];
    if (level === 'package') {
      const r = await sql<RepoRowDb>`SELECT ${REPO_COLUMNS} FROM code_repos
        WHERE org_id = ${this.orgId} AND id = ANY(${ids}::uuid[])`.execute(this.tx);
      return r.rows.map((row) => repoNode(toRepo(row)));
    }
    const symbols = await sql<SymbolRowDb>`SELECT ${SYMBOL_SELECT} FROM code_symbols s
        JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
        JOIN code_repos r ON r.org_id = s.org_id AND r.id = s.repo_id
      WHERE s.org_id = ${this.orgId} AND s.id = ANY(${ids}::uuid[])`.execute(this.tx);
    const files = await sql<{ id: string; path: string; repo_id: string; repo_name: string }>`
      SELECT f.id, f.path, f.repo_id, r.name AS repo_name FROM code_files f
        JOIN code_repos r ON r.org_id = f.org_id AND r.id = f.repo_id
      WHERE f.org_id = ${this.orgId} AND f.id = ANY(${ids}::uuid[])`.execute(this.tx);
    return [...symbols.rows.map((row) => symbolNode(toSymbol(row))), ...files.rows.map(toFileNode)];
  }

  async findFileSymbols(fileIds: readonly string[]): Promise<CodeSymbol[]> {
    const ids = fileIds.filter(isUuid);
    if (ids.length === 0) return [];
    const r = await sql<SymbolRowDb>`SELECT ${SYMBOL_SELECT} FROM code_symbols s
        JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
        JOIN code_repos r ON r.org_id = s.org_id AND r.id = s.repo_id
      WHERE s.org_id = ${this.orgId} AND s.file_id = ANY(${ids}::uuid[])
      ORDER BY f.path, s.start_line, s.start_col`.execute(this.tx);
    return r.rows.map(toSymbol);
  }

  async findReferenceGraph(repoId: string): Promise<ReferenceGraph> {
    if (!isUuid(repoId)) return { symbols: [], edges: [] };
    const symbols = await sql<SymbolRowDb>`SELECT ${SYMBOL_SELECT} FROM code_symbols s
        JOIN code_files f ON f.org_id = s.org_id AND f.id = s.file_id
        JOIN code_repos r ON r.org_id = s.org_id AND r.id = s.repo_id
      WHERE s.org_id = ${this.orgId} AND s.repo_id = ${repoId}`.execute(this.tx);
    // Every reference counts (weighted by its confidence): a symbol used ten times by one caller matters more.
    const edges = await sql<{ src: string; dst: string; w: number }>`
      SELECT e.src_id AS src, e.dst_id AS dst, sum(e.confidence)::float8 AS w FROM code_edges e
        JOIN code_symbols t ON t.org_id = e.org_id AND t.id = e.dst_id AND t.repo_id = e.repo_id
      WHERE e.org_id = ${this.orgId} AND e.repo_id = ${repoId} AND e.dst_kind = 'symbol'
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS') AND e.src_id <> e.dst_id
      GROUP BY e.src_id, e.dst_id`.execute(this.tx);
    return {
      symbols: symbols.rows.map(toSymbol),
      edges: edges.rows.map((e) => ({ src: e.src, dst: e.dst, weight: Number(e.w) })),
    };
  }
}
