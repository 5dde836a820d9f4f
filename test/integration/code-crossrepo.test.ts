import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, makeRepo, writeFiles } from '../helpers/code-fixtures.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface RefJson {
  kind: string;
  confidence: number;
  repoId: string;
  path: string;
  span: { startLine: number; startColumn: number } | null;
  enclosing: { qualifiedName: string } | null;
  target: { name: string; qualifiedName: string; path: string };
}
interface SymbolJson {
  id: string;
  name: string;
  path: string;
  repo: { id: string; name: string };
}

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

/** A library published as `@acme/lib`: its entry (dist/index.js) maps back to src/index.ts, which re-exports. */
const LIB: Record<string, string> = {
  'package.json': JSON.stringify({
    name: '@acme/lib',
    version: '1.2.0',
    main: 'dist/index.js',
    types: 'dist/index.d.ts',
    exports: { '.': { types: './dist/index.d.ts', import: './dist/index.js' } },
  }),
  'src/index.ts': lines("export { parse } from './parse.js';", "export { Tokenizer } from './tokenizer.js';"),
  'src/parse.ts': lines(
    "import { Tokenizer } from './tokenizer.js';",
    'export function parse(input: string): string[] {',
    '  return new Tokenizer().split(input);',
    '}',
  ),
  'src/tokenizer.ts': lines(
    'export class Tokenizer {',
    '  split(s: string): string[] {',
    "    return s.split(' ');",
    '  }',
    '}',
  ),
  // Same name, not reachable from the entry point: never the target of the app's import.
  'src/legacy/parse.ts': lines('export function parse(input: string): number {', '  return input.length;', '}'),
};

/** An application depending on `@acme/lib` (registered as a separate repository). */
const APP: Record<string, string> = {
  'package.json': JSON.stringify({
    name: '@acme/app',
    version: '0.1.0',
    dependencies: { '@acme/lib': '^1.0.0', react: '^18.0.0' },
    devDependencies: { vitest: '^3.0.0' },
  }),
  'src/main.ts': lines(
    "import { parse, Tokenizer } from '@acme/lib';",
    'export function run(text: string): number {',
    '  const t = new Tokenizer();',
    '  return parse(text).length + t.split(text).length;',
    '}',
  ),
};

/**
 * A TypeScript project where the name-only heuristic goes wrong: `format` is
 * re-exported by src/index.ts, which also holds a method called `format`
 * (the heuristic looks the name up in the file the import resolved to); and
 * `render` is a parameter shadowing the only function of that name.
 */
const PRECISE: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'precise-app', version: '1.0.0' }),
  'tsconfig.json': JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'ESNext',
      moduleResolution: 'Bundler',
      strict: true,
      baseUrl: '.',
      paths: { '@util/*': ['src/util/*'] },
    },
  }),
  'src/util/format.ts': lines('export function format(n: number): string {', '  return n.toFixed(2);', '}'),
  'src/index.ts': lines(
    "export { format } from './util/format';",
    'export class Legacy {',
    '  format(s: string): string {',
    '    return s.trim();',
    '  }',
    '}',
  ),
  'src/app.ts': lines(
    "import { format } from './index';",
    'export function show(): string {',
    '  return format(1);',
    '}',
  ),
  'src/aliased.ts': lines(
    "import { format } from '@util/format';",
    'export function total(): string {',
    '  return format(2);',
    '}',
  ),
  'src/render.ts': lines(
    'export const SCALE = 2;',
    'export function render(n: number): string {',
    '  return String(n * SCALE);',
    '}',
  ),
  'src/shadow.ts': lines('export function apply(render: (n: number) => string): string {', '  return render(3);', '}'),
  // Columns count UTF-16 code units on both sides: the Armenian word is 8 of them (16 UTF-8 bytes), the emoji 2.
  'src/unicode.ts': lines(
    "import { format } from './util/format';",
    'export function greet(): string {',
    '  return `Չափազանց ${format(3)} 😀` + format(4);',
    '}',
  ),
};

/** One engram with its orgs' helpers. */
function harness() {
  const h = {
    t: undefined as unknown as TestEngram,
    call: (org: TestOrg, url: string, method: 'GET' | 'POST' | 'DELETE' = 'GET', payload?: object) =>
      h.t.app.inject({ method, url, headers: org.auth, ...(payload === undefined ? {} : { payload }) }),
    register: async (org: TestOrg, dir: string): Promise<string> => {
      const res = await h.call(org, '/v1/repos', 'POST', { path: dir });
      expect(res.statusCode).toBe(202);
      await h.t.engram.worker.drain();
      const id = res.json<{ id: string }>().id;
      const repo = (await h.call(org, `/v1/repos/${id}`)).json<{ status: string; lastError: string | null }>();
      expect([repo.status, repo.lastError]).toEqual(['indexed', null]);
      return id;
    },
    references: async (org: TestOrg, symbol: string): Promise<{ symbols: SymbolJson[]; items: RefJson[] }> => {
      const res = await h.call(org, `/v1/code/references?symbol=${encodeURIComponent(symbol)}&limit=200`);
      expect(res.statusCode).toBe(200);
      return res.json();
    },
  };
  return h;
}

describe(`cross-repository links (${backend})`, () => {
  const h = harness();
  let roots: string;
  let a: TestOrg;
  let b: TestOrg;
  let libA: string;
  let appA: string;

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-xrepo-')));
    h.t = await createTestEngram({ CODE_ALLOWED_ROOTS: roots });
    a = await h.t.makeOrg();
    b = await h.t.makeOrg();
    // Each org has its own copies, under <root>/<its slug>/.
    for (const org of [a, b]) {
      makeRepo(path.join(roots, org.slug, 'lib'), LIB);
      makeRepo(path.join(roots, org.slug, 'app'), APP);
    }
    // Org A registers the library first, org B the application first: links form either way.
    libA = await h.register(a, path.join(roots, a.slug, 'lib'));
    appA = await h.register(a, path.join(roots, a.slug, 'app'));
  });
  afterAll(async () => {
    await h.t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  it('records a DEPENDS_ON edge from the app to the library it declares, with the version range', async () => {
    const deps = await h.t.engram.repos.dependencies(a.ctx);
    expect(deps.map((d) => [d.fromRepoId, d.toRepoId, d.manager, d.package, d.version, d.dependencyKind])).toEqual([
      [appA, libA, 'npm', '@acme/lib', '^1.0.0', 'runtime'],
    ]);
    expect((await h.t.engram.repos.dependencies(a.ctx, libA)).map((d) => d.fromRepoName)).toEqual(['app']);
  });

  it('finds the app’s call sites among the references of the library’s parse and Tokenizer', async () => {
    const r = await h.references(a, 'parse');
    const fromApp = r.items.filter((x) => x.repoId === appA);
    expect(fromApp.map((x) => [x.path, x.kind, x.confidence, x.enclosing?.qualifiedName, x.target.path])).toEqual([
      ['src/main.ts', 'CALLS', 0.9, 'run', 'src/parse.ts'],
    ]);
    // The library's own use of Tokenizer and the app's both count.
    const tok = await h.references(a, 'Tokenizer');
    expect(tok.items.map((x) => [x.repoId, x.path])).toEqual(
      expect.arrayContaining([
        [libA, 'src/parse.ts'],
        [appA, 'src/main.ts'],
      ]),
    );
  });

  it('answers impact across repositories: the app is affected by the library’s parse and by the package', async () => {
    type Traversal = {
      start: Array<{ path: string | null; repo: { id: string } }>;
      byDepth: Array<{ depth: number; items: Array<{ node: { name: string; repo: { id: string } } }> }>;
    };
    const sym = await h.call(a, '/v1/code/impact?symbol=parse&depth=3');
    expect(sym.statusCode).toBe(200);
    const r = sym.json<Traversal>();
    expect(r.start.map((s) => [s.repo.id, s.path])).toContainEqual([libA, 'src/parse.ts']);
    const hits = r.byDepth.flatMap((g) => g.items.map((i) => [g.depth, i.node.repo.id, i.node.name]));
    expect(hits).toContainEqual([1, appA, 'run']);

    const pkg = await h.call(a, `/v1/code/impact?package=${encodeURIComponent('@acme/lib')}&depth=2`);
    expect(pkg.statusCode, pkg.body).toBe(200);
    const affected = pkg.json<Traversal>().byDepth.flatMap((g) => g.items.map((i) => i.node.repo.id));
    expect(affected).toContain(appA);
  });

  it('keeps the links when the library is re-indexed after a change', async () => {
    const lib = path.join(roots, a.slug, 'lib');
    writeFiles(lib, { 'src/parse.ts': `// moved down a line\n${LIB['src/parse.ts'] ?? ''}` });
    git(lib, 'commit', '-q', '-am', 'shift');
    expect((await h.call(a, `/v1/repos/${libA}/index`, 'POST')).statusCode).toBe(202);
    await h.t.engram.worker.drain();
    const fromApp = (await h.references(a, 'parse')).items.filter((x) => x.repoId === appA);
    expect(fromApp.map((x) => [x.path, x.confidence, x.target.path])).toEqual([['src/main.ts', 0.9, 'src/parse.ts']]);
  });

  it('keeps each org to its own repositories: org B links its own copies only', async () => {
    const appB = await h.register(b, path.join(roots, b.slug, 'app'));
    expect((await h.references(b, 'parse')).items).toEqual([]);
    expect(await h.t.engram.repos.dependencies(b.ctx)).toEqual([]);
    const libB = await h.register(b, path.join(roots, b.slug, 'lib'));
    const deps = await h.t.engram.repos.dependencies(b.ctx);
    expect(deps.map((d) => [d.fromRepoId, d.toRepoId])).toEqual([[appB, libB]]);
    const r = await h.references(b, 'parse');
    const repos = new Set([...r.items.map((x) => x.repoId), ...r.symbols.map((s) => s.repo.id)]);
    expect([...repos].sort()).toEqual([appB, libB].sort());
    expect(r.items.filter((x) => x.repoId === appB).map((x) => [x.path, x.confidence])).toEqual([['src/main.ts', 0.9]]);
    // And A still sees only A's.
    const ra = await h.references(a, 'parse');
    expect(ra.items.every((x) => x.repoId === appA || x.repoId === libA)).toBe(true);
  });

  it('unlinks references into a removed library, leaving no dangling edge', async () => {
    expect((await h.call(a, `/v1/repos/${libA}`, 'DELETE')).statusCode).toBe(204);
    expect(await h.t.engram.repos.dependencies(a.ctx)).toEqual([]);
    expect((await h.references(a, 'parse')).items).toEqual([]);
    const dangling = await h.t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${a.orgId}, true)`.execute(
        tx,
      );
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM code_edges e
        WHERE e.dst_kind = 'symbol' AND NOT EXISTS (SELECT 1 FROM code_symbols s WHERE s.id = e.dst_id)`.execute(tx);
      return r.rows[0]?.n;
    });
    expect(dangling).toBe(0);
  });
});

describe.each([
  ['on', 'true'],
  ['off', 'false'],
])(`the precise TypeScript pass %s (${backend})`, (mode, precise) => {
  const h = harness();
  let roots: string;
  let a: TestOrg;

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-precise-')));
    h.t = await createTestEngram({ CODE_ALLOWED_ROOTS: roots, CODE_PRECISE: precise });
    a = await h.t.makeOrg();
    makeRepo(path.join(roots, a.slug, 'precise'), PRECISE);
    await h.register(a, path.join(roots, a.slug, 'precise'));
  });
  afterAll(async () => {
    await h.t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  const refs = async (symbol: string) =>
    (await h.references(a, symbol)).items.map((x) => [x.path, x.target.qualifiedName, x.target.path, x.confidence]);

  it('resolves an import through a tsconfig path alias', async () => {
    expect(await refs('format')).toContainEqual([
      'src/aliased.ts',
      'format',
      'src/util/format.ts',
      mode === 'on' ? 1 : 0.95,
    ]);
  });

  it(
    mode === 'on'
      ? 'points a re-exported name at its declaration with confidence 1.0'
      : 'heuristic only: takes the same-named method of the re-exporting file',
    async () => {
      const seen = (await refs('format')).filter((r) => r[0] === 'src/app.ts');
      expect(seen).toEqual(
        mode === 'on'
          ? [['src/app.ts', 'format', 'src/util/format.ts', 1]]
          : [['src/app.ts', 'Legacy.format', 'src/index.ts', 0.95]],
      );
    },
  );

  it(
    mode === 'on'
      ? 'adds references the parser does not report (a constant read), from the enclosing function'
      : 'heuristic only: a constant read is not a reference',
    async () => {
      const seen = (await h.references(a, 'SCALE')).items.map((x) => [
        x.kind,
        x.path,
        x.enclosing?.qualifiedName,
        x.confidence,
      ]);
      expect(seen).toEqual(mode === 'on' ? [['REFERENCES', 'src/render.ts', 'render', 1]] : []);
    },
  );

  it('places references after non-ASCII text where the compiler does: one edge each, no duplicate', async () => {
    const seen = (await h.references(a, 'format')).items
      .filter((x) => x.path === 'src/unicode.ts')
      .map((x) => [x.span?.startLine, x.span?.startColumn, x.confidence]);
    expect(seen).toEqual([
      [2, 21, mode === 'on' ? 1 : 0.95],
      [2, 38, mode === 'on' ? 1 : 0.95],
    ]);
  });

  it('gives the same answers after a re-index that changed another file (nothing added twice)', async () => {
    const before = { format: await refs('format'), scale: await refs('SCALE'), render: await refs('render') };
    const dir = path.join(roots, a.slug, 'precise');
    writeFiles(dir, { 'src/aliased.ts': `// edited\n${PRECISE['src/aliased.ts'] ?? ''}` });
    git(dir, 'commit', '-q', '-am', 'edit');
    const repoId = (await h.references(a, 'format')).symbols[0]?.repo.id ?? '';
    expect((await h.call(a, `/v1/repos/${repoId}/index`, 'POST')).statusCode).toBe(202);
    await h.t.engram.worker.drain();
    expect(await refs('format')).toEqual(before.format);
    expect(await refs('SCALE')).toEqual(before.scale);
    expect(await refs('render')).toEqual(before.render);
  });

  it(
    mode === 'on'
      ? 'drops the guess for a parameter that shadows a function'
      : 'heuristic only: guesses the only function of a shadowed name',
    async () => {
      expect(await refs('render')).toEqual(mode === 'on' ? [] : [['src/shadow.ts', 'render', 'src/render.ts', 0.5]]);
    },
  );
});
