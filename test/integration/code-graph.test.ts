import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRepo } from '../helpers/code-fixtures.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface NodeJson {
  kind: 'symbol' | 'file' | 'package';
  id: string;
  name: string;
  qualifiedName: string;
  path: string | null;
  repo: { id: string; name: string };
}
interface HitJson {
  node: NodeJson;
  depth: number;
  confidence: number;
  path: Array<{ node: { name: string }; via: string | null; confidence: number }>;
}
interface TraversalJson {
  level: string;
  start: NodeJson[];
  total: number;
  truncated: boolean;
  byDepth: Array<{ depth: number; items: HitJson[] }>;
}

/*
 * parse ← tokenize ← makeParser ← main ← cli (calls across files through imports),
 * helper → parse (same file), ping ⇄ pong (a cycle, both also calling parse),
 * lonely → uniqueThing (a 0.5 guess: no import says where it comes from).
 */
const FILES: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'graph-lib', version: '1.0.0' }),
  'src/util.ts': [
    'export function parse(input: string): string[] {',
    "  return input.split(' ');",
    '}',
    'export function helper(): number {',
    "  return parse('x').length;",
    '}',
    '',
  ].join('\n'),
  'src/parser.ts': [
    "import { parse } from './util';",
    'export function tokenize(text: string): number {',
    '  return parse(text).length;',
    '}',
    'export function makeParser(): number {',
    "  return tokenize('a b');",
    '}',
    '',
  ].join('\n'),
  'src/app.ts': [
    "import { makeParser } from './parser';",
    'export function main(): number {',
    '  return makeParser();',
    '}',
    '',
  ].join('\n'),
  'src/cli.ts': ["import { main } from './app';", 'export function cli(): number {', '  return main();', '}', ''].join(
    '\n',
  ),
  'src/cycle-a.ts': [
    "import { pong } from './cycle-b';",
    "import { parse } from './util';",
    'export function ping(n: number): number {',
    "  return n <= 0 ? parse('a').length : pong(n - 1);",
    '}',
    '',
  ].join('\n'),
  'src/cycle-b.ts': [
    "import { ping } from './cycle-a';",
    "import { parse } from './util';",
    'export function pong(n: number): number {',
    "  return n <= 0 ? parse('b').length : ping(n - 1);",
    '}',
    '',
  ].join('\n'),
  'src/guess.ts': 'export function lonely(): number {\n  return uniqueThing();\n}\n',
  'src/unique.ts': 'export function uniqueThing(): number {\n  return 3;\n}\n',
};

const CODE_TOOLS = [
  'find_references',
  'find_symbol',
  'get_code',
  'get_definition',
  'get_dependencies',
  'get_dependents',
  'impact',
  'repo_map',
];

/** Hit names per depth: `{1: ['a', 'b'], 2: […]}`, each sorted. */
const names = (t: TraversalJson): Record<number, string[]> =>
  Object.fromEntries(t.byDepth.map((g) => [g.depth, g.items.map((h) => h.node.qualifiedName).sort()]));

describe(`code graph queries (${backend})`, () => {
  let t: TestEngram;
  let roots: string;
  let a: TestOrg;
  let b: TestOrg;
  let repoId: string;

  const get = (org: TestOrg, url: string) => t.app.inject({ method: 'GET', url, headers: org.auth });
  const ok = async (org: TestOrg, url: string): Promise<TraversalJson> => {
    const res = await get(org, url);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<TraversalJson>();
  };
  const diffImpact = (org: TestOrg, payload: object) =>
    t.app.inject({ method: 'POST', url: '/v1/code/impact/diff', headers: org.auth, payload });

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-code-graph-')));
    t = await createTestEngram({ CODE_ALLOWED_ROOTS: roots });
    a = await t.makeOrg();
    b = await t.makeOrg();
    // Each org's repositories live under <root>/<its slug>/.
    const dir = path.join(roots, a.slug, 'graph-lib');
    makeRepo(dir, FILES);
    const res = await t.app.inject({ method: 'POST', url: '/v1/repos', headers: a.auth, payload: { path: dir } });
    expect(res.statusCode).toBe(202);
    repoId = res.json<{ id: string }>().id;
    await t.engram.worker.drain();
    const repo = await get(a, `/v1/repos/${repoId}`);
    expect(repo.json<{ status: string }>().status).toBe('indexed');
  });
  afterAll(async () => {
    await t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  describe('impact', () => {
    it('groups a symbol’s reverse-transitive dependents by depth, with paths and the weakest confidence', async () => {
      const r = await ok(a, '/v1/code/impact?symbol=parse&depth=5');
      expect(r.level).toBe('symbol');
      expect(r.start.map((s) => s.path)).toEqual(['src/util.ts']);
      expect(names(r)).toEqual({
        1: ['helper', 'ping', 'pong', 'tokenize'],
        2: ['makeParser'],
        3: ['main'],
        4: ['cli'],
      });
      expect(r.total).toBe(7);
      const cli = r.byDepth[3]?.items[0];
      expect(cli?.path.map((s) => s.node.name)).toEqual(['parse', 'tokenize', 'makeParser', 'main', 'cli']);
      expect(cli?.path.slice(1).map((s) => s.via)).toEqual(['CALLS', 'CALLS', 'CALLS', 'CALLS']);
      // tokenize → parse through an import (0.95), makeParser → tokenize in the same file (0.9).
      expect(cli?.confidence).toBe(0.9);
      expect(r.byDepth[0]?.items.find((h) => h.node.name === 'tokenize')?.confidence).toBe(0.95);
    });

    it('lifts a changed method to its class (CONTAINS) and walks on to the class’s users', async () => {
      const c = await t.makeOrg();
      const dir = path.join(roots, c.slug, 'shapes');
      makeRepo(dir, {
        'src/shape.ts': ['export class Shape {', '  area(): number {', '    return 1;', '  }', '}', ''].join('\n'),
        'src/draw.ts': [
          "import { Shape } from './shape';",
          'export function draw(): Shape {',
          '  return new Shape();',
          '}',
          '',
        ].join('\n'),
      });
      const res = await t.app.inject({ method: 'POST', url: '/v1/repos', headers: c.auth, payload: { path: dir } });
      expect(res.statusCode).toBe(202);
      await t.engram.worker.drain();
      const impact = await ok(c, '/v1/code/impact?symbol=Shape.area&depth=3');
      expect(names(impact)).toEqual({ 1: ['Shape'], 2: ['draw'] });
      expect(impact.byDepth[1]?.items[0]?.path.slice(1).map((s) => s.via)).toEqual(['CONTAINS', 'REFERENCES']);
      const members = await ok(c, '/v1/code/dependencies?symbol=Shape&depth=1');
      expect(names(members)).toEqual({ 1: ['Shape.area'] });
    });

    it('stops at the requested depth', async () => {
      const r = await ok(a, '/v1/code/impact?symbol=parse&depth=2');
      expect(Object.keys(names(r))).toEqual(['1', '2']);
      expect(r.total).toBe(5);
    });

    it('follows no edge below the confidence floor', async () => {
      const guessed = await ok(a, '/v1/code/impact?symbol=uniqueThing');
      expect(guessed.byDepth[0]?.items.map((h) => [h.node.name, h.confidence])).toEqual([['lonely', 0.5]]);
      const sure = await ok(a, '/v1/code/impact?symbol=uniqueThing&minConfidence=0.6');
      expect(sure.total).toBe(0);
      // 0.95 edges stay in at a 0.95 floor (stored as real), 0.9 ones go.
      const strict = await ok(a, '/v1/code/impact?symbol=parse&minConfidence=0.95');
      expect(names(strict)).toEqual({ 1: ['ping', 'pong', 'tokenize'] });
    });

    it('is safe on cycles: each node once, at its shortest distance', async () => {
      const sym = await ok(a, '/v1/code/impact?symbol=ping&depth=10');
      expect(names(sym)).toEqual({ 1: ['pong'] });
      const file = await ok(a, '/v1/code/impact?file=src/cycle-a.ts&depth=10');
      expect(names(file)).toEqual({ 1: ['src/cycle-b.ts'] });
    });

    it('works on files: importers, then their importers', async () => {
      const r = await ok(a, '/v1/code/impact?file=./src/util.ts');
      expect(r.level).toBe('file');
      expect(names(r)).toEqual({
        1: ['src/cycle-a.ts', 'src/cycle-b.ts', 'src/parser.ts'],
        2: ['src/app.ts'],
        3: ['src/cli.ts'],
      });
      const cli = r.byDepth[2]?.items[0];
      expect(cli?.path.map((s) => s.node.name)).toEqual(['src/util.ts', 'src/parser.ts', 'src/app.ts', 'src/cli.ts']);
      expect(cli?.path[1]?.via).toBe('IMPORTS');
      expect(cli?.confidence).toBe(1);
    });

    it('caps the hits and says so', async () => {
      const r = await ok(a, '/v1/code/impact?symbol=parse&limit=2');
      expect(r.total).toBe(2);
      expect(r.truncated).toBe(true);
    });
  });

  describe('impact of a diff', () => {
    const diff = [
      'diff --git a/src/parser.ts b/src/parser.ts',
      '--- a/src/parser.ts',
      '+++ b/src/parser.ts',
      '@@ -2,3 +2,3 @@',
      ' export function tokenize(text: string): number {',
      '-  return parse(text).length;',
      '+  return parse(text).length + 1;',
      ' }',
      'diff --git a/src/app.ts b/src/app.ts',
      '--- a/src/app.ts',
      '+++ b/src/app.ts',
      '@@ -1 +1,2 @@',
      " import { makeParser } from './parser';",
      "+import { parse } from './util';",
      'diff --git a/src/new.ts b/src/new.ts',
      'new file mode 100644',
      '--- /dev/null',
      '+++ b/src/new.ts',
      '@@ -0,0 +1 @@',
      '+export const x = 1;',
      '',
    ].join('\n');

    it('maps changed lines to the symbols around them (or the file, at top level) and walks their impact', async () => {
      const res = await diffImpact(a, { repo: repoId, diff });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{
        changed: Array<{ path: string; indexed: boolean; topLevel: boolean; symbols: NodeJson[] }>;
        impact: TraversalJson;
      }>();
      expect(body.changed.map((c) => [c.path, c.indexed, c.topLevel, c.symbols.map((s) => s.name)])).toEqual([
        ['src/parser.ts', true, false, ['tokenize']],
        ['src/app.ts', true, true, []],
        ['src/new.ts', false, false, []],
      ]);
      expect(names(body.impact)).toEqual({ 1: ['makeParser', 'src/cli.ts'], 2: ['main'], 3: ['cli'] });
    });

    it('refuses a text that is not a diff, and a repository it does not know', async () => {
      expect((await diffImpact(a, { repo: repoId, diff: 'not a diff' })).statusCode).toBe(400);
      expect((await diffImpact(a, { repo: '018f0000-0000-7000-8000-000000000000', diff })).statusCode).toBe(404);
    });
  });

  describe('dependencies and dependents', () => {
    it('answers direct and transitive dependencies of a symbol', async () => {
      expect(names(await ok(a, '/v1/code/dependencies?symbol=main'))).toEqual({ 1: ['makeParser'] });
      expect(names(await ok(a, '/v1/code/dependencies?symbol=main&depth=3'))).toEqual({
        1: ['makeParser'],
        2: ['tokenize'],
        3: ['parse'],
      });
      expect(names(await ok(a, '/v1/code/dependents?symbol=tokenize'))).toEqual({ 1: ['makeParser'] });
    });

    it('answers file dependencies and dependents', async () => {
      expect(names(await ok(a, '/v1/code/dependencies?file=src/cli.ts&depth=5'))).toEqual({
        1: ['src/app.ts'],
        2: ['src/parser.ts'],
        3: ['src/util.ts'],
      });
      expect(names(await ok(a, '/v1/code/dependents?file=src/parser.ts'))).toEqual({ 1: ['src/app.ts'] });
    });

    it('answers at package level, by repository name or package name', async () => {
      for (const p of ['graph-lib', repoId]) {
        const r = await ok(a, `/v1/code/dependents?package=${p}`);
        expect(r.level).toBe('package');
        expect(r.start.map((s) => [s.kind, s.id, s.qualifiedName])).toEqual([
          ['package', repoId, 'npm graph-lib 1.0.0'],
        ]);
        expect(r.total).toBe(0);
      }
    });
  });

  describe('across repositories', () => {
    it('walks packages through DEPENDS_ON and symbols into the repositories that use them', async () => {
      const c = await t.makeOrg();
      const libDir = path.join(roots, c.slug, 'graph-lib');
      makeRepo(libDir, FILES);
      const appDir = path.join(roots, c.slug, 'graph-app');
      makeRepo(appDir, {
        'package.json': JSON.stringify({
          name: 'graph-app',
          version: '0.1.0',
          dependencies: { 'graph-lib': '^1.0.0' },
        }),
        'src/index.ts': [
          "import { parse } from 'graph-lib';",
          'export function start(): number {',
          "  return parse('x y').length;",
          '}',
          '',
        ].join('\n'),
      });
      const ids: string[] = [];
      for (const dir of [libDir, appDir]) {
        const res = await t.app.inject({ method: 'POST', url: '/v1/repos', headers: c.auth, payload: { path: dir } });
        expect(res.statusCode).toBe(202);
        ids.push(res.json<{ id: string }>().id);
        await t.engram.worker.drain();
      }
      const [libId, appId] = ids;
      const users = await ok(c, '/v1/code/dependents?package=graph-lib');
      expect(users.byDepth[0]?.items.map((h) => [h.node.id, h.path[1]?.via])).toEqual([[appId, 'DEPENDS_ON']]);
      const uses = await ok(c, '/v1/code/dependencies?package=graph-app');
      expect(uses.byDepth[0]?.items.map((h) => h.node.id)).toEqual([libId]);

      const impact = await ok(c, `/v1/code/impact?symbol=parse&repo=${libId}`);
      const start = impact.byDepth[0]?.items.find((h) => h.node.name === 'start');
      expect(start?.node.repo.id).toBe(appId);
      // A repository filter that holds no such symbol finds nothing to start from.
      expect((await get(c, `/v1/code/impact?symbol=parse&repo=${appId}`)).statusCode).toBe(404);
    });
  });

  describe('get_code and repo_map', () => {
    it('returns a symbol’s source with context lines', async () => {
      const res = await get(a, '/v1/code/code?symbol=tokenize&context=1');
      expect(res.statusCode, res.body).toBe(200);
      const [s, ...more] = res.json<{ items: Array<{ startLine: number; endLine: number; code: string }> }>().items;
      expect(more).toEqual([]);
      expect([s?.startLine, s?.endLine]).toEqual([1, 5]);
      expect(s?.code.split('\n')).toEqual((FILES['src/parser.ts'] ?? '').split('\n').slice(0, 5));
    });

    it('ranks the most referenced symbol first and keeps to the token budget', async () => {
      const res = await get(a, `/v1/code/repo-map?repo=${repoId}&tokens=1000`);
      expect(res.statusCode, res.body).toBe(200);
      const full = res.json<{ symbols: Array<{ symbol: { name: string } }>; text: string; totalSymbols: number }>();
      expect(full.symbols[0]?.symbol.name).toBe('parse');
      expect(full.symbols).toHaveLength(full.totalSymbols);
      expect(full.text).toMatch(/^src\/util\.ts:\n {2}(export )?function parse\(input: string\)/);

      const small = (await get(a, '/v1/code/repo-map?repo=graph-lib&tokens=50')).json<typeof full>();
      expect(small.text.length).toBeLessThanOrEqual(200);
      expect(small.symbols.length).toBeGreaterThan(0);
      expect(small.symbols.length).toBeLessThan(full.totalSymbols);
      expect(small.symbols[0]?.symbol.name).toBe('parse');
    });
  });

  describe('bad input', () => {
    it.each([
      ['no target', '/v1/code/impact', 400],
      ['two targets', '/v1/code/impact?symbol=parse&file=src/util.ts', 400],
      ['a depth out of range', '/v1/code/impact?symbol=parse&depth=0', 400],
      ['a confidence floor above 1', '/v1/code/dependents?symbol=parse&minConfidence=2', 400],
      ['an unknown parameter', '/v1/code/dependencies?symbol=parse&level=file', 400],
      ['an unknown symbol', '/v1/code/impact?symbol=noSuchThing', 404],
      ['an unknown file', '/v1/code/dependents?file=src/nope.ts', 404],
      ['an unknown package', '/v1/code/dependencies?package=nope', 404],
      ['code of an unknown symbol', '/v1/code/code?symbol=noSuchThing', 404],
      ['a map of an unknown repository', '/v1/code/repo-map?repo=nope', 404],
    ])('answers %s with the standard error body', async (_what, url, status) => {
      const res = await get(a, url);
      expect(res.statusCode).toBe(status);
      expect(res.json<{ error: { code: string } }>().error.code).toBe(
        status === 400 ? 'VALIDATION_FAILED' : 'NOT_FOUND',
      );
    });

    it('needs code:read', async () => {
      const key = await a.keyWith(['memories:read']);
      const res = await t.app.inject({
        method: 'GET',
        url: '/v1/code/impact?symbol=parse',
        headers: { authorization: `Bearer ${key}` },
      });
      expect(res.statusCode).toBe(403);
    });
  });

  describe('isolation between orgs', () => {
    it('does not find, walk, show or map another org’s code', async () => {
      for (const url of [
        '/v1/code/impact?symbol=parse',
        '/v1/code/impact?file=src/util.ts',
        `/v1/code/dependencies?package=${repoId}`,
        '/v1/code/dependents?package=graph-lib',
        '/v1/code/code?symbol=parse',
        `/v1/code/repo-map?repo=${repoId}`,
      ]) {
        expect((await get(b, url)).statusCode, url).toBe(404);
      }
      const scipId = (await get(a, '/v1/code/definition?symbol=parse')).json<{ items: Array<{ symbol: string }> }>()
        .items[0]?.symbol;
      expect(scipId).toMatch(/^scip-typescript npm graph-lib 1\.0\.0 /);
      const byScip = `/v1/code/dependents?symbol=${encodeURIComponent(scipId ?? '')}`;
      expect((await get(a, byScip)).statusCode).toBe(200);
      expect((await get(b, byScip)).statusCode).toBe(404);
      const diff = '--- a/src/util.ts\n+++ b/src/util.ts\n@@ -1 +1 @@\n-x\n+y\n';
      expect((await diffImpact(b, { repo: repoId, diff })).statusCode).toBe(404);
    });
  });

  describe('MCP tools', () => {
    let url: string;
    const connect = async (authorization: string): Promise<Client> => {
      const client = new Client({ name: 'engram-test', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers: { authorization } } }),
      );
      return client;
    };
    const text = (r: unknown): string => (r as { content: Array<{ text: string }> }).content[0]?.text ?? '';
    const structured = (r: unknown) => (r as { structuredContent: Record<string, unknown> }).structuredContent;

    beforeAll(async () => {
      url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    });

    it('lists the code tools as read-only and answers them', async () => {
      const client = await connect(a.auth.authorization);
      try {
        const { tools } = await client.listTools();
        const code = tools.filter((x) => CODE_TOOLS.includes(x.name));
        expect(code.map((x) => x.name).sort()).toEqual(CODE_TOOLS);
        for (const tool of code) {
          expect(tool.annotations, tool.name).toMatchObject({ readOnlyHint: true, destructiveHint: false });
          expect(tool.outputSchema?.type, tool.name).toBe('object');
        }

        const impact = await client.callTool({ name: 'impact', arguments: { symbol: 'parse', depth: 5 } });
        expect(structured(impact).total).toBe(7);
        expect(text(impact)).toContain('depth 4:');
        expect(text(impact)).toContain('via parse → tokenize → makeParser → main → cli');

        const fromDiff = await client.callTool({
          name: 'impact',
          arguments: {
            repo: repoId,
            diff: '--- a/src/app.ts\n+++ b/src/app.ts\n@@ -3 +3 @@\n-  return makeParser();\n+  return 1;\n',
          },
        });
        expect(names(structured(fromDiff) as unknown as TraversalJson)).toEqual({ 1: ['cli'] });

        const found = await client.callTool({ name: 'find_symbol', arguments: { query: 'makePars' } });
        expect(text(found)).toContain('function makeParser  src/parser.ts:5');
        const refs = await client.callTool({ name: 'find_references', arguments: { symbol: 'tokenize' } });
        expect(text(refs)).toContain('CALLS 0.9  src/parser.ts:6 in makeParser → tokenize');
        const def = await client.callTool({ name: 'get_definition', arguments: { symbol: 'cli' } });
        expect(text(def)).toContain('src/cli.ts:2');
        const deps = await client.callTool({ name: 'get_dependencies', arguments: { file: 'src/cli.ts', depth: 2 } });
        expect(names(structured(deps) as unknown as TraversalJson)).toEqual({
          1: ['src/app.ts'],
          2: ['src/parser.ts'],
        });
        const users = await client.callTool({ name: 'get_dependents', arguments: { symbol: 'main' } });
        expect(text(users)).toContain('function cli  src/cli.ts:2');
        const src = await client.callTool({ name: 'get_code', arguments: { symbol: 'cli' } });
        expect(text(src)).toBe('src/cli.ts:2-4 (function cli)\nexport function cli(): number {\n  return main();\n}');
        const map = await client.callTool({ name: 'repo_map', arguments: { repo: 'graph-lib', tokens: 100 } });
        expect(text(map).startsWith('src/util.ts:\n')).toBe(true);

        const bad = await client.callTool({ name: 'impact', arguments: { symbol: 'parse', file: 'src/util.ts' } });
        expect(bad.isError).toBe(true);
        expect(text(bad)).toMatch(/^VALIDATION_FAILED/);
        const missing = await client.callTool({ name: 'get_code', arguments: { symbol: 'noSuchThing' } });
        expect(text(missing)).toMatch(/^NOT_FOUND/);
      } finally {
        await client.close();
      }
    });

    it('neither shows nor runs them without code:read, and another org finds nothing', async () => {
      const reader = await connect(`Bearer ${await a.keyWith(['memories:read'])}`);
      try {
        const listed = (await reader.listTools()).tools.map((x) => x.name);
        expect(listed.filter((n) => CODE_TOOLS.includes(n))).toEqual([]);
        const refused = await reader.callTool({ name: 'impact', arguments: { symbol: 'parse' } });
        expect(refused.isError).toBe(true);
        expect(text(refused)).toMatch(/^FORBIDDEN/);
      } finally {
        await reader.close();
      }
      const other = await connect(b.auth.authorization);
      try {
        const r = await other.callTool({ name: 'impact', arguments: { symbol: 'parse' } });
        expect(text(r)).toMatch(/^NOT_FOUND/);
        const found = await other.callTool({ name: 'find_symbol', arguments: { query: 'parse' } });
        expect(structured(found).items).toEqual([]);
      } finally {
        await other.close();
      }
    });
  });
});
