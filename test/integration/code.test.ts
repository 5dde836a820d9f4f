import { existsSync, mkdtempSync, realpathSync, rmSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalRepoWorkspace } from '../../src/code/local-workspace.ts';
import { isAppError } from '../../src/errors.ts';
import { openDatabase } from '../../src/storage/postgres/database.ts';
import { Migrator } from '../../src/storage/postgres/migrator.ts';
import { PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';
import { git, makeRepo, writeFiles } from '../helpers/code-fixtures.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  testConfig,
  type TestEngram,
  type TestOrg,
} from '../helpers/test-engram.ts';

interface RepoJson {
  id: string;
  name: string;
  source: string;
  location: string;
  status: string;
  defaultBranch: string | null;
  package: { manager: string; name: string; version: string } | null;
  lastIndexedCommit: string | null;
  lastError: string | null;
  progress: {
    phase: string;
    filesTotal: number;
    filesDone: number;
    parsed: number;
    unchanged: number;
    removed: number;
    skippedTooLarge: number;
    skippedBinary: number;
  };
  counts?: { files: number; symbols: number; edges: number };
}

interface SymbolJson {
  id: string;
  symbol: string;
  name: string;
  qualifiedName: string;
  kind: string;
  path: string;
  span: { startLine: number };
  signature: string;
  doc: string | null;
  repo: { id: string; name: string };
}

interface RefJson {
  kind: string;
  confidence: number;
  path: string;
  span: { startLine: number } | null;
  enclosing: { qualifiedName: string } | null;
  target: { name: string; path: string };
}

const MAX_FILE_BYTES = 131_072;

const LIB_FILES: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'my-lib', version: '1.2.0' }),
  '.gitignore': 'ignored/\n*.gen.ts\n',
  'src/util.ts': [
    '/** Parses a string into tokens. */',
    'export function parse(input: string): string[] {',
    "  return input.split(' ');",
    '}',
    'export class Tokenizer {',
    '  next(): string {',
    "    return parse('a b')[0] ?? '';",
    '  }',
    '}',
    'export function helperUtil(): number {',
    '  return 1;',
    '}',
    '',
  ].join('\n'),
  'src/parser.ts': [
    "import { parse, Tokenizer } from './util.js';",
    'export class Parser {',
    '  run(text: string): number {',
    '    const t = new Tokenizer();',
    '    return parse(text).length + this.count() + t.next().length;',
    '  }',
    '  count(): number {',
    '    return 1;',
    '  }',
    '}',
    'export function makeParser(): Parser {',
    '  return new Parser();',
    '}',
    '',
  ].join('\n'),
  'src/main.ts': [
    "import * as util from './util';",
    "import { makeParser } from './parser';",
    'export function main(): number {',
    "  util.parse('x');",
    "  return makeParser().run('y');",
    '}',
    '',
  ].join('\n'),
  'src/other.ts': 'export function uniqueHelper(): number {\n  return 2;\n}\n',
  'src/orphan.ts': 'export function orphan(): number {\n  return uniqueHelper();\n}\n',
  'ignored/skip.ts': 'export function ignoredFn(): void {}\n',
  'src/types.gen.ts': 'export function generatedFn(): void {}\n',
  'src/big.ts': `export function hugeFn(): void {}\n// ${'x'.repeat(MAX_FILE_BYTES)}\n`,
  'node_modules/dep/index.js': 'export function depFn() {}\n',
};

describe(`code intelligence (${backend})`, () => {
  let t: TestEngram;
  let top: string;
  /** Org A's directory under the root. */
  let roots: string;
  let libDir: string;
  let libHead: string;
  let a: TestOrg;
  let b: TestOrg;
  let libId: string;

  const call = (org: TestOrg, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: org.auth, ...(payload === undefined ? {} : { payload }) });
  const getRepo = async (org: TestOrg, id: string): Promise<RepoJson> => {
    const res = await call(org, 'GET', `/v1/repos/${id}`);
    expect(res.statusCode).toBe(200);
    return res.json<RepoJson>();
  };
  const symbols = async (org: TestOrg, query: string): Promise<SymbolJson[]> => {
    const res = await call(org, 'GET', `/v1/code/symbols?${query}`);
    expect(res.statusCode).toBe(200);
    return res.json<{ items: SymbolJson[] }>().items;
  };
  const definition = async (org: TestOrg, symbol: string): Promise<SymbolJson[]> => {
    const res = await call(org, 'GET', `/v1/code/definition?symbol=${encodeURIComponent(symbol)}`);
    expect(res.statusCode).toBe(200);
    return res.json<{ items: SymbolJson[] }>().items;
  };
  const references = async (org: TestOrg, symbol: string): Promise<{ symbols: SymbolJson[]; items: RefJson[] }> => {
    const res = await call(org, 'GET', `/v1/code/references?symbol=${encodeURIComponent(symbol)}`);
    expect(res.statusCode).toBe(200);
    return res.json();
  };
  const reindex = async (org: TestOrg, id: string): Promise<RepoJson> => {
    const res = await call(org, 'POST', `/v1/repos/${id}/index`);
    expect(res.statusCode).toBe(202);
    await t.engram.worker.drain();
    return getRepo(org, id);
  };
  /** Row counts of the four code tables as raw SQL sees them under `org`'s RLS. */
  const rawCounts = (org: TestOrg) =>
    t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${org.orgId}, true)`.execute(
        tx,
      );
      const n = async (table: string) =>
        (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(tx)).rows[0]?.n;
      return {
        repos: await n('code_repos'),
        files: await n('code_files'),
        symbols: await n('code_symbols'),
        edges: await n('code_edges'),
      };
    });

  /** Edges whose target symbol or file no longer exists (there must be none). */
  const danglingEdges = (org: TestOrg) =>
    t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${org.orgId}, true)`.execute(
        tx,
      );
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM code_edges e
        WHERE (e.dst_kind = 'symbol' AND NOT EXISTS (SELECT 1 FROM code_symbols s WHERE s.id = e.dst_id))
           OR (e.dst_kind = 'file' AND NOT EXISTS (SELECT 1 FROM code_files f WHERE f.id = e.dst_id))`.execute(tx);
      return r.rows[0]?.n;
    });

  beforeAll(async () => {
    top = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-code-')));
    t = await createTestEngram({ CODE_ALLOWED_ROOTS: top, CODE_MAX_FILE_BYTES: String(MAX_FILE_BYTES) });
    a = await t.makeOrg();
    b = await t.makeOrg();
    // A's directory under the root (CODE_ALLOWED_ROOTS confines each org to <root>/<slug>/).
    roots = path.join(top, a.slug);
    libDir = path.join(roots, 'lib');
    libHead = makeRepo(libDir, LIB_FILES);
    const res = await call(a, 'POST', '/v1/repos', { path: libDir });
    expect(res.statusCode).toBe(202);
    const queued = res.json<RepoJson>();
    expect(queued.status).toBe('queued');
    expect(queued.name).toBe('lib');
    libId = queued.id;
    await t.engram.worker.drain();
  });
  afterAll(async () => {
    await t.close();
    rmSync(top, { recursive: true, force: true });
  });

  describe('registering and indexing', () => {
    it('indexes a registered path in the background and reports it indexed with full progress', async () => {
      const repo = await getRepo(a, libId);
      expect(repo.lastError).toBeNull();
      expect(repo.status).toBe('indexed');
      expect(repo.progress.phase).toBe('done');
      expect(repo.progress.filesDone).toBe(repo.progress.filesTotal);
      expect(repo.progress.filesTotal).toBe(5);
      expect(repo.progress.parsed).toBe(5);
      expect(repo.lastIndexedCommit).toBe(libHead);
      expect(repo.defaultBranch).toBe('main');
      expect(repo.package).toEqual({ manager: 'npm', name: 'my-lib', version: '1.2.0' });
      expect(repo.counts?.files).toBe(5);
      expect(repo.counts?.symbols).toBeGreaterThanOrEqual(9);
      const list = await call(a, 'GET', '/v1/repos');
      expect(list.json<{ items: RepoJson[] }>().items.map((r) => [r.id, r.status])).toEqual([[libId, 'indexed']]);
    });

    it('leaves the counts out while a run is indexing, and only then', async () => {
      const tenant = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
      const setStatus = (status: 'indexing' | 'indexed') =>
        tenant.withTenant(a.orgId, ({ code }) => code.updateRepo(libId, { status }));
      await setStatus('indexing');
      try {
        const during = await getRepo(a, libId);
        expect(during.status).toBe('indexing');
        expect(during).not.toHaveProperty('counts');
        expect(during.progress.filesTotal).toBe(5);
      } finally {
        await setStatus('indexed');
      }
      expect((await getRepo(a, libId)).counts?.files).toBe(5);
    });

    it('refreshes planner statistics of the columns resolution joins on', async () => {
      await t.engram.system.analyzeCodeGraph();
      const r = await sql<{ column: string }>`SELECT DISTINCT tablename || '.' || attname AS column FROM pg_stats
        WHERE schemaname = 'public' AND tablename IN ('code_symbols', 'code_edges')
          AND attname IN ('name', 'file_id', 'dst_name', 'hint_file_id')`.execute(t.engram.database.adminDb);
      expect(r.rows.map((x) => x.column).sort()).toEqual([
        'code_edges.dst_name',
        'code_edges.file_id',
        'code_edges.hint_file_id',
        'code_symbols.file_id',
        'code_symbols.name',
      ]);
      const rows = await sql<{
        n: number;
      }>`SELECT reltuples::int AS n FROM pg_class WHERE relname = 'code_symbols'`.execute(t.engram.database.adminDb);
      expect(rows.rows[0]?.n).toBeGreaterThan(0);
    });

    it('skips .gitignored, vendored and oversized files', async () => {
      const repo = await getRepo(a, libId);
      expect(repo.progress.skippedTooLarge).toBe(1);
      for (const name of ['ignoredFn', 'generatedFn', 'hugeFn', 'depFn']) {
        expect(await symbols(a, `q=${name}`)).toEqual([]);
      }
    });
  });

  describe('symbols', () => {
    it('finds exact names first, then prefixes, then substrings, case-insensitively', async () => {
      const names = (await symbols(a, 'q=PARSE')).map((s) => s.name);
      expect(names[0]).toBe('parse');
      expect(names.indexOf('Parser')).toBeGreaterThan(names.indexOf('parse'));
      expect(names.indexOf('makeParser')).toBeGreaterThan(names.indexOf('Parser'));
      expect((await symbols(a, 'q=tok')).map((s) => s.name)).toContain('Tokenizer');
      expect((await symbols(a, 'q=elper')).map((s) => s.name).sort()).toEqual(['helperUtil', 'uniqueHelper']);
      expect((await symbols(a, 'q=parse&kind=class')).map((s) => s.name)).toEqual(['Parser']);
      expect(await symbols(a, 'q=%25')).toEqual([]);
    });

    it('answers a definition by plain name, qualified name and SCIP id', async () => {
      const [parse, ...more] = await definition(a, 'parse');
      expect(more).toEqual([]);
      expect(parse?.path).toBe('src/util.ts');
      expect(parse?.doc).toBe('Parses a string into tokens.');
      expect(parse?.signature).toContain('function parse(input: string)');
      expect(parse?.span.startLine).toBe(1);
      expect(parse?.symbol).toBe('scip-typescript npm my-lib 1.2.0 src/`util.ts`/parse().');

      const run = await definition(a, 'Parser.run');
      expect(run.map((s) => [s.path, s.kind, s.qualifiedName])).toEqual([['src/parser.ts', 'method', 'Parser.run']]);
      expect(run[0]?.symbol).toBe('scip-typescript npm my-lib 1.2.0 src/`parser.ts`/Parser#run().');
      expect((await definition(a, 'Parser#run')).map((s) => s.id)).toEqual(run.map((s) => s.id));

      expect((await definition(a, parse?.symbol ?? '')).map((s) => s.id)).toEqual([parse?.id]);
      const unescaped = 'scip-typescript npm my-lib 1.2.0 src/util.ts/parse().';
      expect((await definition(a, unescaped)).map((s) => s.id)).toEqual([parse?.id]);
      expect(await definition(a, 'noSuchSymbol')).toEqual([]);
    });

    it('answers a definition by qualified name or SCIP id when a name holds dots, and by either case', async () => {
      const dir = path.join(roots, 'dotted');
      makeRepo(dir, {
        'src/ns.ts': 'export namespace Outer.Inner {\n  export function deepFn(): number {\n    return 1;\n  }\n}\n',
      });
      const res = await call(a, 'POST', '/v1/repos', { path: dir, name: 'dotted' });
      const id = res.json<RepoJson>().id;
      expect(await t.engram.worker.runOnce()).toBe(1);
      const [deep, ...more] = await definition(a, 'Outer.Inner.deepFn');
      expect(more).toEqual([]);
      expect([deep?.name, deep?.qualifiedName]).toEqual(['deepFn', 'Outer.Inner.deepFn']);
      const [ns] = await definition(a, 'Outer.Inner');
      expect([ns?.name, ns?.kind]).toEqual(['Outer.Inner', 'module']);
      expect((await definition(a, 'outer.inner.DEEPFN')).map((s) => s.id)).toEqual([deep?.id]);
      for (const s of [deep, ns]) expect((await definition(a, s?.symbol ?? '')).map((x) => x.id)).toEqual([s?.id]);
      expect(await definition(a, 'Outer.Inner.nope')).toEqual([]);
      expect((await call(a, 'DELETE', `/v1/repos/${id}`)).statusCode).toBe(204);
    });

    it('finds references across files through relative imports, with their confidence', async () => {
      const r = await references(a, 'parse');
      const seen = r.items.map((x) => [x.path, x.kind, x.confidence, x.enclosing?.qualifiedName]);
      expect(seen).toContainEqual(['src/parser.ts', 'CALLS', 0.95, 'Parser.run']);
      expect(seen).toContainEqual(['src/main.ts', 'CALLS', 0.95, 'main']);
      expect(seen).toContainEqual(['src/util.ts', 'CALLS', 0.9, 'Tokenizer.next']);
      expect(r.items.every((x) => x.target.path === 'src/util.ts')).toBe(true);

      const run = await references(a, 'Parser.run');
      expect(run.items.map((x) => [x.path, x.enclosing?.qualifiedName])).toContainEqual(['src/main.ts', 'main']);

      const guess = await references(a, 'uniqueHelper');
      expect(guess.items.map((x) => [x.path, x.confidence])).toEqual([['src/orphan.ts', 0.5]]);
    });
  });

  describe('incremental re-indexing', () => {
    it('re-parses nothing when nothing changed', async () => {
      const before = await getRepo(a, libId);
      const after = await reindex(a, libId);
      expect(after.status).toBe('indexed');
      expect(after.progress.parsed).toBe(0);
      expect(after.progress.unchanged).toBe(5);
      expect(after.counts).toEqual(before.counts);
    });

    it('re-parses only a changed file, and references into it still resolve', async () => {
      writeFiles(libDir, {
        'src/util.ts': `export function tokenize(s: string): string[] {\n  return [s];\n}\n${LIB_FILES['src/util.ts']}`,
      });
      git(libDir, 'commit', '-q', '-am', 'add tokenize');
      const head = git(libDir, 'rev-parse', 'HEAD');
      const repo = await reindex(a, libId);
      expect(repo.progress.parsed).toBe(1);
      expect(repo.progress.unchanged).toBe(4);
      expect(repo.lastIndexedCommit).toBe(head);

      const [parse] = await definition(a, 'parse');
      expect(parse?.span.startLine).toBe(4);
      const seen = (await references(a, 'parse')).items.map((x) => [x.path, x.confidence]);
      expect(seen).toContainEqual(['src/parser.ts', 0.95]);
      expect(seen).toContainEqual(['src/main.ts', 0.95]);
      expect(seen).toContainEqual(['src/util.ts', 0.9]);
      expect((await definition(a, 'tokenize')).map((s) => s.path)).toEqual(['src/util.ts']);
    });

    it('drops a deleted file with its symbols and edges', async () => {
      unlinkSync(path.join(libDir, 'src/other.ts'));
      git(libDir, 'commit', '-q', '-am', 'remove other');
      const repo = await reindex(a, libId);
      expect(repo.progress.removed).toBe(1);
      expect(repo.progress.parsed).toBe(0);
      expect(repo.counts?.files).toBe(4);
      expect(await symbols(a, 'q=uniqueHelper')).toEqual([]);
      expect((await references(a, 'uniqueHelper')).items).toEqual([]);
      expect(await danglingEdges(a)).toBe(0);
    });

    it('skips reading a file whose size and mtime are as last seen, and re-reads one whose mtime moved', async () => {
      const file = path.join(libDir, 'src/orphan.ts');
      const storedMtime = () =>
        t.engram.database.db.transaction().execute(async (tx) => {
          await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${a.orgId}, true)`.execute(
            tx,
          );
          const r = await sql<{ m: string | null }>`SELECT mtime_ms AS m FROM code_files
            WHERE repo_id = ${libId} AND path = 'src/orphan.ts'`.execute(tx);
          return r.rows[0]?.m === null || r.rows[0]?.m === undefined ? null : Number(r.rows[0].m);
        });
      // Written moments ago: too recent to trust, so no mtime is kept and the next run hashes it.
      writeFiles(libDir, { 'src/orphan.ts': 'export function orphan(): number {\n  return 1 + uniqueHelper();\n}\n' });
      expect((await reindex(a, libId)).progress.parsed).toBe(1);
      expect(await storedMtime()).toBeNull();

      // An hour old: read once more (same content, so not parsed), and from then on trusted.
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(file, old, old);
      let repo = await reindex(a, libId);
      expect(repo.progress.parsed).toBe(0);
      expect(await storedMtime()).toBe(Math.trunc(statSync(file).mtimeMs));

      // Same size and mtime: not read at all, so an edit that kept both goes unseen (as with git's index)…
      writeFiles(libDir, { 'src/orphan.ts': 'export function orphan(): number {\n  return 2 + uniqueHelper();\n}\n' });
      utimesSync(file, old, old);
      repo = await reindex(a, libId);
      expect(repo.progress.parsed).toBe(0);
      // …and once the mtime moves, the file is read, hashed and parsed again.
      const later = new Date(Date.now() - 1_800_000);
      utimesSync(file, later, later);
      repo = await reindex(a, libId);
      expect(repo.progress.parsed).toBe(1);
      expect(await storedMtime()).toBe(Math.trunc(statSync(file).mtimeMs));
    });
  });

  describe('imports resolved as files are built', () => {
    /** Paths of the files `file` depends on at depth 1, in repo `id`. */
    const importsOf = async (id: string, file: string): Promise<string[]> => {
      const res = await call(a, 'GET', `/v1/code/dependencies?file=${file}&repo=${id}&depth=1`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ byDepth: Array<{ items: Array<{ node: { qualifiedName: string } }> }> }>();
      return (body.byDepth[0]?.items ?? []).map((h) => h.node.qualifiedName).sort();
    };

    it('links imports within a run, unlinks those into a file dropped as binary, and relinks after a rewrite', async () => {
      const dir = path.join(roots, 'imports');
      makeRepo(dir, {
        'src/a.ts': "import { bee } from './b';\nexport const a = () => bee();\n",
        'src/b.ts': 'export function bee(): number {\n  return 1;\n}\n',
        // A NUL byte: dropped as binary after it was walked, while c.ts's import had already resolved to it.
        'src/bin.ts': 'export const x = 1;\u0000\n',
        'src/c.ts': "import { x } from './bin';\nexport const c = () => x;\n",
      });
      const res = await call(a, 'POST', '/v1/repos', { path: dir, name: 'imports' });
      expect(res.statusCode).toBe(202);
      const id = res.json<RepoJson>().id;
      await t.engram.worker.drain();
      const repo = await getRepo(a, id);
      expect([repo.status, repo.progress.parsed, repo.progress.skippedBinary]).toEqual(['indexed', 3, 1]);
      expect(await importsOf(id, 'src/a.ts')).toEqual(['src/b.ts']);
      expect(await importsOf(id, 'src/c.ts')).toEqual([]);
      expect(await danglingEdges(a)).toBe(0);
      expect((await references(a, 'bee')).items.map((r) => [r.path, r.confidence])).toEqual([['src/a.ts', 0.95]]);

      // b.ts rewritten and a new importer of it in the same run: both importers point at it.
      writeFiles(dir, {
        'src/b.ts': 'export function bee(): number {\n  return 2;\n}\n',
        'src/d.ts': "import { bee } from './b';\nexport const d = () => bee();\n",
      });
      git(dir, 'add', '-A');
      git(dir, 'commit', '-qm', 'rewrite b, add d');
      const again = await reindex(a, id);
      expect([again.progress.parsed, again.progress.unchanged]).toEqual([2, 2]);
      expect(await importsOf(id, 'src/a.ts')).toEqual(['src/b.ts']);
      expect(await importsOf(id, 'src/d.ts')).toEqual(['src/b.ts']);
      expect((await references(a, 'bee')).items.map((r) => r.path).sort()).toEqual(['src/a.ts', 'src/d.ts']);
      expect(await danglingEdges(a)).toBe(0);
      expect((await call(a, 'DELETE', `/v1/repos/${id}`)).statusCode).toBe(204);
    });

    it('writes a file of thousands of symbols in a batch of its own, parsed first, and links it all the same', async () => {
      // 1,050 functions and as many calls: over the rows a write batch takes, so this file goes alone,
      // and it is the largest, so it is parsed first while the small files around it come later.
      const big = Array.from({ length: 1050 }, (_, i) => `export function f${i}(): number {\n  return g${i}();\n}\n`);
      const helpers = Array.from({ length: 1050 }, (_, i) => `export const g${i} = (): number => ${i};\n`);
      const dir = path.join(roots, 'big');
      makeRepo(dir, {
        'src/big.ts': `import { ${helpers.map((_, i) => `g${i}`).join(', ')} } from './helpers';\n${big.join('')}`,
        'src/helpers.ts': helpers.join(''),
        'src/use.ts': "import { f1049 } from './big';\nexport const use = () => f1049();\n",
      });
      const before = await rawCounts(a);
      const res = await call(a, 'POST', '/v1/repos', { path: dir, name: 'big' });
      const id = res.json<RepoJson>().id;
      // The index job only: code-search chunks of 2,100 symbols would take seconds and are not the point.
      expect(await t.engram.worker.runOnce()).toBe(1);
      const repo = await getRepo(a, id);
      expect([repo.status, repo.progress.parsed, repo.counts?.symbols]).toEqual(['indexed', 3, 2101]);
      expect(await importsOf(id, 'src/big.ts')).toEqual(['src/helpers.ts']);
      expect(await importsOf(id, 'src/use.ts')).toEqual(['src/big.ts']);
      expect((await references(a, 'f1049')).items.map((r) => [r.path, r.confidence])).toEqual([['src/use.ts', 0.95]]);
      expect((await references(a, 'g7')).items.map((r) => r.path)).toEqual(['src/big.ts']);
      expect(await danglingEdges(a)).toBe(0);
      expect((await call(a, 'DELETE', `/v1/repos/${id}`)).statusCode).toBe(204);
      // The repo's files went with it, and their symbols and edges with them (a trigger on code_files).
      expect(await rawCounts(a)).toEqual(before);
    });
  });

  describe('git URLs', () => {
    it('clones a file:// URL, indexes it, and removes the clone with the repo', async () => {
      const dir = path.join(roots, 'remote-lib');
      const head = makeRepo(dir, { 'pkg/mod.py': 'def shout(s):\n    """Loud."""\n    return s.upper()\n' });
      const res = await call(a, 'POST', '/v1/repos', { url: pathToFileURL(dir).toString(), name: 'remote' });
      expect(res.statusCode).toBe(202);
      const id = res.json<RepoJson>().id;
      await t.engram.worker.drain();
      const repo = await getRepo(a, id);
      expect([repo.status, repo.source, repo.name, repo.lastIndexedCommit]).toEqual(['indexed', 'url', 'remote', head]);
      const found = await symbols(a, `q=shout&repo=${id}`);
      expect(found.map((s) => [s.name, s.path, s.doc])).toEqual([['shout', 'pkg/mod.py', 'Loud.']]);
      const clone = path.join(t.config.dataDir, 'repos', a.orgId, id);
      expect(existsSync(path.join(clone, 'pkg/mod.py'))).toBe(true);

      expect((await call(a, 'DELETE', `/v1/repos/${id}`)).statusCode).toBe(204);
      expect(existsSync(clone)).toBe(false);
      expect(await symbols(a, 'q=shout')).toEqual([]);
      expect((await call(a, 'GET', `/v1/repos/${id}`)).statusCode).toBe(404);
    });
  });

  describe('bad input', () => {
    it.each([
      ['neither path nor url', {}, 400],
      ['both path and url', { path: '/tmp', url: 'https://example.com/x.git' }, 400],
      ['a path outside the allowed roots', { path: '/etc' }, 400],
      ['a relative path', { path: 'lib' }, 400],
      ['a path that is not a directory', { path: '/nonexistent-root/x' }, 400],
      ['plain http', { url: 'http://example.com/x.git' }, 400],
      ['the ext transport', { url: 'ext::sh -c touch% /tmp/pwned' }, 400],
      ['a file:// URL outside the allowed roots', { url: 'file:///etc' }, 400],
      ['credentials in the URL', { url: 'https://user:secret@example.com/x.git' }, 400],
      ['an unknown field', { path: '/tmp', branch: 'main' }, 400],
    ])('refuses %s', async (_what, payload, status) => {
      const res = await call(a, 'POST', '/v1/repos', payload);
      expect(res.statusCode).toBe(status);
      expect(res.json<{ error: { code: string } }>().error.code).toMatch(
        /^(VALIDATION_FAILED|PATH_NOT_ALLOWED|URL_NOT_ALLOWED)$/,
      );
    });

    it('refuses a file inside the allowed roots, and the same location twice', async () => {
      expect((await call(a, 'POST', '/v1/repos', { path: path.join(libDir, 'package.json') })).statusCode).toBe(400);
      const dup = await call(a, 'POST', '/v1/repos', { path: libDir });
      expect(dup.statusCode).toBe(409);
    });

    it('refuses every local path when no roots are configured', async () => {
      const ws = new LocalRepoWorkspace({
        dataDir: roots,
        allowedRoots: [],
        orgSlug: async () => a.slug,
        git: t.config.code.git,
        maxFileBytes: 1,
        maxFiles: 1,
      });
      const err = await ws.resolveLocalPath(a.orgId, libDir).catch((e: unknown) => e);
      expect(isAppError(err) && err.code).toBe('FORBIDDEN');
    });

    it('needs the code scopes', async () => {
      const key = await a.keyWith(['memories:read']);
      const res = await t.app.inject({ method: 'GET', url: '/v1/repos', headers: { authorization: `Bearer ${key}` } });
      expect(res.statusCode).toBe(403);
    });
  });

  describe('rows a re-index replaces', () => {
    it('are vacuumed by the run on the embedded store, and left to autovacuum on PostgreSQL', async () => {
      const c = await t.makeOrg();
      const dir = path.join(top, c.slug, 'many');
      const files = (v: number) =>
        Object.fromEntries(
          Array.from({ length: 100 }, (_, i) => [
            `src/f${i}.ts`,
            `export function f${i}(): number {\n  return ${v};\n}\n`,
          ]),
        );
      makeRepo(dir, files(1));
      const { adminDb } = t.engram.database;
      const tables = ['code_symbols', 'code_chunks'];
      // So that autovacuum, where it runs, cannot get there first.
      if (backend === 'postgres') {
        for (const table of tables) {
          await sql`ALTER TABLE ${sql.table(table)} SET (autovacuum_enabled = false)`.execute(adminDb);
        }
      }
      const dead = async () => {
        await sql`SELECT pg_stat_force_next_flush()`.execute(adminDb);
        const r = await sql<{ relname: string; n: string }>`SELECT relname, n_dead_tup AS n FROM pg_stat_user_tables
          WHERE schemaname = 'public' AND relname = ANY(${tables}::text[]) ORDER BY relname`.execute(adminDb);
        return Object.fromEntries(r.rows.map((x) => [x.relname, Number(x.n)]));
      };
      const res = await call(c, 'POST', '/v1/repos', { path: dir });
      expect(res.statusCode).toBe(202);
      const id = res.json<RepoJson>().id;
      await t.engram.worker.drain();

      // Every file changes: the run deletes all 100 old symbols (past the threshold of 50 + 20 % of the
      // live rows) and writes new ones, and the chunk job that follows replaces their 100 chunks.
      writeFiles(dir, files(2));
      git(dir, 'commit', '-q', '-am', 'change every file');
      const repo = await reindex(c, id);
      expect([repo.status, repo.progress.parsed]).toEqual(['indexed', 100]);

      if (backend === 'pglite') {
        expect(await dead()).toEqual({ code_chunks: 0, code_symbols: 0 });
        expect(await t.engram.system.vacuum(tables)).toEqual([]);
      } else {
        // The writes were other connections': their counts reach the statistics within about a second.
        let counts = await dead();
        for (let i = 0; i < 50 && Object.values(counts).some((n) => n < 100); i++) {
          await new Promise((r) => setTimeout(r, 100));
          counts = await dead();
        }
        expect(counts.code_chunks).toBeGreaterThanOrEqual(100);
        expect(counts.code_symbols).toBeGreaterThanOrEqual(100);
        expect(await t.engram.system.vacuum(tables)).toEqual(['code_chunks', 'code_symbols']);
        expect(await dead()).toEqual({ code_chunks: 0, code_symbols: 0 });
      }
    });
  });

  describe('isolation between orgs', () => {
    it('does not show, index or delete a repo of another org', async () => {
      expect((await call(b, 'GET', '/v1/repos')).json<{ items: unknown[] }>().items).toEqual([]);
      expect((await call(b, 'GET', `/v1/repos/${libId}`)).statusCode).toBe(404);
      expect((await call(b, 'POST', `/v1/repos/${libId}/index`)).statusCode).toBe(404);
      expect((await call(b, 'DELETE', `/v1/repos/${libId}`)).statusCode).toBe(404);
      expect((await getRepo(a, libId)).status).toBe('indexed');
    });

    it('does not return symbols, definitions or references of another org', async () => {
      expect(await symbols(b, 'q=parse')).toEqual([]);
      expect(await definition(b, 'parse')).toEqual([]);
      const parseId = (await definition(a, 'parse'))[0]?.symbol ?? '';
      expect(await definition(b, parseId)).toEqual([]);
      expect(await references(b, 'parse')).toEqual({ symbols: [], items: [] });
    });

    it('lets raw SQL under another org’s RLS see none of the repos, files, symbols or edges', async () => {
      const mine = await rawCounts(a);
      expect(Object.values(mine).every((n) => (n ?? 0) > 0)).toBe(true);
      expect(await rawCounts(b)).toEqual({ repos: 0, files: 0, symbols: 0, edges: 0 });
    });

    it('refuses org B A’s directory, and indexes B’s own copy without showing it A’s', async () => {
      const refused = await call(b, 'POST', '/v1/repos', { path: libDir });
      expect([refused.statusCode, refused.json().error.code]).toEqual([400, 'PATH_NOT_ALLOWED']);
      const copy = path.join(top, b.slug, 'lib');
      makeRepo(copy, LIB_FILES);
      const res = await call(b, 'POST', '/v1/repos', { path: copy });
      expect(res.statusCode).toBe(202);
      const id = res.json<RepoJson>().id;
      expect(id).not.toBe(libId);
      await t.engram.worker.drain();
      const mine = (await definition(b, 'parse')).map((s) => s.repo.id);
      expect(mine).toEqual([id]);
    });

    it('deletes an org’s files, symbols and edges with the org, and nothing of another org', async () => {
      const other = await rawCounts(a);
      expect((await rawCounts(b)).symbols).toBeGreaterThan(0);
      await sql`DELETE FROM orgs WHERE id = ${b.orgId}`.execute(t.engram.database.adminDb);
      expect(await rawCounts(b)).toEqual({ repos: 0, files: 0, symbols: 0, edges: 0 });
      expect(await rawCounts(a)).toEqual(other);
    });
  });
});

describe(`migration 0010_code (${backend})`, () => {
  it('grants the code scopes to admin-equivalent keys only, and takes them back on down', async () => {
    const tdb = await createTestDatabase();
    const db = await openDatabase(testConfig(tdb.env).store);
    try {
      const m = new Migrator(db.adminDb, db.kind);
      await m.up(9);
      const org = '018f0000-0000-7000-8000-000000000010';
      await sql`INSERT INTO orgs (id, slug, name) VALUES (${org}, 'upgraded', 'Upgraded')`.execute(db.adminDb);
      for (const [id, scopes] of [
        ['018f0000-0000-7000-8000-0000000000b1', ['memories:read', 'admin:keys']],
        ['018f0000-0000-7000-8000-0000000000b2', ['memories:read']],
      ] as const) {
        await sql`INSERT INTO api_keys (org_id, id, name, prefix, secret_hash, scopes)
          VALUES (${org}, ${id}, 'k', ${id.slice(-4)}, 'x', ${[...scopes]}::text[])`.execute(db.adminDb);
      }
      const scopes = async () =>
        (await sql<{ scopes: string[] }>`SELECT scopes FROM api_keys ORDER BY id`.execute(db.adminDb)).rows.map((r) =>
          [...r.scopes].sort(),
        );
      await m.up(10);
      expect(await scopes()).toEqual([['admin:keys', 'code:read', 'code:write', 'memories:read'], ['memories:read']]);
      await m.down(1);
      expect(await scopes()).toEqual([['admin:keys', 'memories:read'], ['memories:read']]);
    } finally {
      await db.close();
      await tdb.drop();
    }
  });
});
