import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/storage/postgres/schema.ts';
import { fakeOpenAiEnv, startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.ts';
import { makeRepo } from '../helpers/code-fixtures.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface HitJson {
  chunk: {
    id: string;
    repo: { id: string; name: string };
    path: string;
    language: string;
    kind: string;
    name: string;
    qualifiedName: string | null;
    lines: { start: number; end: number };
    snippet: string;
  };
  score: number;
  signals: { lexical?: { rank: number }; vector?: { rank: number }; graph?: { rank: number } };
  via?: { name: string; edge: string };
}
interface SearchJson {
  results: HitJson[];
  mode: string;
  degraded: string[];
  degradedReasons: Record<string, { code: string; message: string }>;
  lexicalRanker: string;
}

const DISTANCE_TS = [
  '/** Edit distance between two strings. */',
  'export function levenshteinDistance(a: string, b: string): number {',
  '  const row = Array.from({ length: b.length + 1 }, (_, i) => i);',
  '  for (let i = 1; i <= a.length; i++) {',
  '    let prev = row[0] ?? 0;',
  '    row[0] = i;',
  '    for (let j = 1; j <= b.length; j++) {',
  '      const cur = row[j] ?? 0;',
  '      row[j] = Math.min(cur + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));',
  '      prev = cur;',
  '    }',
  '  }',
  '  return row[b.length] ?? 0;',
  '}',
  '',
].join('\n');

const APP_FILES: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'app', version: '1.0.0' }),
  'src/text/tokens.ts': [
    '/** Splits the input into words on white space. */',
    'export function splitWords(input: string): string[] {',
    '  return input.split(/\\s+/).filter((w) => w.length > 0);',
    '}',
    '/** How many words the input holds. */',
    'export function countWords(input: string): number {',
    '  return splitWords(input).length;',
    '}',
    '',
  ].join('\n'),
  'src/algo/distance.ts': DISTANCE_TS,
  'src/net/http_client.py': [
    'def fetch_json_document(url):',
    '    """Download a document over HTTP and decode it."""',
    '    return {"url": url}',
    '',
  ].join('\n'),
  'lib/legacy.js': 'function parseConfigFile(file) {\n  return { file };\n}\nmodule.exports = { parseConfigFile };\n',
  'scripts/run.js': "const started = Date.now();\nconsole.log('bootstrap sequence', started);\n",
};

describe(`code search (${backend})`, () => {
  let t: TestEngram;
  let roots: string;
  let appDir: string;
  let a: TestOrg;
  let b: TestOrg;
  let appId: string;
  let otherId: string;

  const search = async (org: TestOrg, payload: object): Promise<SearchJson> => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/code/search', headers: org.auth, payload });
    expect(res.statusCode).toBe(200);
    return res.json<SearchJson>();
  };
  const names = (r: SearchJson) => r.results.map((h) => h.chunk.name);
  const register = async (org: TestOrg, dir: string): Promise<string> => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/repos', headers: org.auth, payload: { path: dir } });
    expect(res.statusCode).toBe(202);
    await t.engram.worker.drain();
    return res.json<{ id: string }>().id;
  };
  /** Runs `fn` as engram_app under `org`'s RLS. */
  const asOrg = <T>(org: TestOrg, fn: (tx: Transaction<DB>) => Promise<T>) =>
    t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${org.orgId}, true)`.execute(
        tx,
      );
      return fn(tx);
    });
  const chunkIds = (org: TestOrg, file: string) =>
    asOrg(org, async (tx) =>
      (await sql<{ id: string }>`SELECT id FROM code_chunks WHERE path = ${file} ORDER BY id`.execute(tx)).rows.map(
        (r) => r.id,
      ),
    );
  const rawCounts = (org: TestOrg) =>
    asOrg(org, async (tx) => ({
      chunks: (await sql<{ n: number }>`SELECT count(*)::int AS n FROM code_chunks`.execute(tx)).rows[0]?.n,
      vectors: (await sql<{ n: number }>`SELECT count(*)::int AS n FROM code_chunk_embeddings`.execute(tx)).rows[0]?.n,
    }));

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-code-search-')));
    t = await createTestEngram({ CODE_ALLOWED_ROOTS: roots });
    a = await t.makeOrg();
    b = await t.makeOrg();
    // Each org's repositories live under <root>/<its slug>/.
    appDir = path.join(roots, a.slug, 'app');
    makeRepo(appDir, APP_FILES);
    const otherDir = path.join(roots, a.slug, 'other');
    makeRepo(otherDir, {
      'src/tokens.ts':
        '/** Splits words, the other way. */\nexport function splitWordsAgain(s: string): string[] {\n  return [s];\n}\n',
    });
    appId = await register(a, appDir);
    otherId = await register(a, otherDir);
  });
  afterAll(async () => {
    await t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  describe('chunks', () => {
    it('cuts one chunk per function with one-based lines, and windows for a file without symbols', async () => {
      const r = await search(a, { query: 'levenshteinDistance', mode: 'lexical' });
      const hit = r.results[0];
      expect(hit?.chunk).toMatchObject({
        path: 'src/algo/distance.ts',
        kind: 'function',
        name: 'levenshteinDistance',
        language: 'typescript',
        lines: { start: 2, end: 14 },
      });
      expect(hit?.chunk.snippet.startsWith('export function levenshteinDistance')).toBe(true);
      const script = await search(a, { query: 'bootstrap sequence', mode: 'lexical' });
      expect(script.results[0]?.chunk).toMatchObject({ path: 'scripts/run.js', kind: 'block', lines: { start: 1 } });
      expect((await rawCounts(a)).vectors).toBe((await rawCounts(a)).chunks);
    });
  });

  describe('lexical', () => {
    it('finds a function by the parts of its camelCase or snake_case name', async () => {
      expect(names(await search(a, { query: 'split words', mode: 'lexical' }))).toContain('splitWords');
      expect(names(await search(a, { query: 'fetchJsonDocument', mode: 'lexical' }))[0]).toBe('fetch_json_document');
      expect(names(await search(a, { query: 'parse_config_file', mode: 'lexical' }))[0]).toBe('parseConfigFile');
      const r = await search(a, { query: 'config', mode: 'lexical' });
      expect(r.results[0]?.signals.lexical?.rank).toBe(1);
      expect(['bm25', 'ts_rank_cd']).toContain(r.lexicalRanker);
    });
  });

  describe('planner statistics', () => {
    it('are refreshed after a run that wrote many chunks, so that BM25 reads its top hits off the index', async () => {
      const { adminDb } = t.engram.database;
      const estimate = async () =>
        Number(
          (
            await sql<{ n: number }>`SELECT reltuples::int AS n FROM pg_class WHERE relname = 'code_chunks'`.execute(
              adminDb,
            )
          ).rows[0]?.n,
        );
      // The suite's small repositories wrote fewer than 50 chunks each: never analyzed.
      expect(await estimate()).toBeLessThan(0);
      const c = await t.makeOrg();
      const dir = path.join(roots, c.slug, 'many');
      makeRepo(
        dir,
        Object.fromEntries(
          Array.from({ length: 60 }, (_, i) => [
            `src/m${i}.ts`,
            `export function manyThing${i}(): number {\n  return ${i};\n}\n`,
          ]),
        ),
      );
      await register(c, dir);
      expect(await estimate()).toBeGreaterThanOrEqual(60);
      expect(names(await search(c, { query: 'manyThing7', mode: 'lexical' }))[0]).toBe('manyThing7');
      // Code chunks rank with pg_textsearch where the extension is present (always on PGlite).
      const hasBm25Index = (
        await sql<{ ok: boolean }>`SELECT to_regclass('code_chunks_bm25') IS NOT NULL AS ok`.execute(adminDb)
      ).rows[0]?.ok;
      if (hasBm25Index === true) {
        const plan = await sql<{
          'QUERY PLAN': string;
        }>`EXPLAIN SELECT c.id FROM code_chunks c WHERE c.org_id = ${c.orgId}
          ORDER BY c.search_text <@> to_bm25query('many thing', 'code_chunks_bm25') LIMIT 10`.execute(adminDb);
        expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toContain('Index Scan using code_chunks_bm25');
      }
    });
  });

  describe('vector', () => {
    // The builtin embedder hashes words and character trigrams: it bridges
    // misspellings and word fragments, not meaning.
    it('finds a function from a misspelt description that no keyword matches', async () => {
      const query = 'dowload documnts over htp';
      expect(names(await search(a, { query, mode: 'lexical' }))).not.toContain('fetch_json_document');
      const r = await search(a, { query, mode: 'vector' });
      expect(r.results[0]?.chunk.name).toBe('fetch_json_document');
      expect(r.results[0]?.signals.vector?.rank).toBe(1);
    });
  });

  describe('filters', () => {
    it('keeps only the repositories, languages and paths asked for', async () => {
      const all = names(await search(a, { query: 'split words', mode: 'lexical' }));
      expect(all).toEqual(expect.arrayContaining(['splitWords', 'splitWordsAgain']));
      const inOther = await search(a, { query: 'split words', mode: 'lexical', repos: [otherId] });
      expect(names(inOther)).toEqual(['splitWordsAgain']);
      expect(inOther.results[0]?.chunk.repo).toEqual({ id: otherId, name: 'other' });

      const py = await search(a, { query: 'document words distance config', languages: ['python'] });
      expect(names(py)).toEqual(['fetch_json_document']);
      expect(new Set(py.results.map((h) => h.chunk.language))).toEqual(new Set(['python']));

      const algo = await search(a, { query: 'words distance', paths: ['src/algo/**'] });
      expect(names(algo)).toEqual(['levenshteinDistance']);
      const js = await search(a, { query: 'config bootstrap', mode: 'lexical', paths: ['*.js'] });
      expect(js.results.map((h) => h.chunk.path).sort()).toEqual(['lib/legacy.js', 'scripts/run.js']);
      expect((await search(a, { query: 'words', paths: ['nowhere/**'] })).results).toEqual([]);
      expect((await search(a, { query: 'words', repos: ['not-a-uuid'] })).results).toEqual([]);
    });
  });

  describe('hybrid', () => {
    it('fuses lexical and vector, and adds the callee of a strong hit through the code graph', async () => {
      const lexical = await search(a, { query: 'countWords', mode: 'lexical' });
      expect(lexical.results.every((h) => h.signals.graph === undefined)).toBe(true);
      const r = await search(a, { query: 'countWords', repos: [appId], mode: 'hybrid' });
      expect(r.mode).toBe('hybrid');
      expect(r.degraded).toEqual([]);
      expect(r.results[0]?.chunk.name).toBe('countWords');
      expect(r.results[0]?.signals.lexical?.rank).toBe(1);
      expect(r.results[0]?.signals.vector?.rank).toBeGreaterThanOrEqual(1);
      const callee = r.results.find((h) => h.chunk.name === 'splitWords');
      expect(callee?.signals.graph?.rank).toBeGreaterThanOrEqual(1);
      expect(callee?.via).toMatchObject({ name: 'countWords', edge: 'CALLS' });
    });

    it('is not the default with the builtin embedder: a search that names no mode is lexical', async () => {
      const r = await search(a, { query: 'countWords', repos: [appId] });
      expect(r.mode).toBe('lexical');
      expect(r.results[0]?.chunk.name).toBe('countWords');
      expect(r.results.every((h) => h.signals.vector === undefined && h.signals.graph === undefined)).toBe(true);
    });

    it('refuses bad input and a key without code:read', async () => {
      const bad = await t.app.inject({
        method: 'POST',
        url: '/v1/code/search',
        headers: a.auth,
        payload: { query: '' },
      });
      expect(bad.statusCode).toBe(400);
      const tooMany = await t.app.inject({
        method: 'POST',
        url: '/v1/code/search',
        headers: a.auth,
        payload: { query: 'x', languages: ['cobol'] },
      });
      expect(tooMany.statusCode).toBe(400);
      const key = await a.keyWith(['memories:read']);
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/code/search',
        headers: { authorization: `Bearer ${key}` },
        payload: { query: 'words' },
      });
      expect(res.statusCode).toBe(403);
    });
  });

  describe('re-indexing', () => {
    it('re-chunks only the changed file, keeping the other files’ chunks', async () => {
      const tokensBefore = await chunkIds(a, 'src/text/tokens.ts');
      const distanceBefore = await chunkIds(a, 'src/algo/distance.ts');
      expect(tokensBefore.length).toBe(2);
      writeFileSync(
        path.join(appDir, 'src/algo/distance.ts'),
        `${DISTANCE_TS}/** Hamming distance. */\nexport function hammingDistance(a: string, b: string): number {\n  return a.length - b.length;\n}\n`,
      );
      const res = await t.app.inject({ method: 'POST', url: `/v1/repos/${appId}/index`, headers: a.auth });
      expect(res.statusCode).toBe(202);
      await t.engram.worker.drain();
      expect(await chunkIds(a, 'src/text/tokens.ts')).toEqual(tokensBefore);
      const distanceAfter = await chunkIds(a, 'src/algo/distance.ts');
      expect(distanceAfter).toHaveLength(2);
      expect(distanceAfter.some((id) => distanceBefore.includes(id))).toBe(false);
      expect(names(await search(a, { query: 'hammingDistance', mode: 'lexical' }))[0]).toBe('hammingDistance');
      const counts = await rawCounts(a);
      expect(counts.vectors).toBe(counts.chunks);
    });
  });

  describe('isolation between orgs', () => {
    it('does not return chunks of another org', async () => {
      for (const mode of ['lexical', 'vector', 'hybrid']) {
        expect((await search(b, { query: 'countWords split words', mode })).results).toEqual([]);
      }
      expect((await search(b, { query: 'words', repos: [appId] })).results).toEqual([]);
    });

    it('lets raw SQL under another org’s RLS see none of the chunks or their vectors', async () => {
      const mine = await rawCounts(a);
      expect(mine.chunks).toBeGreaterThan(0);
      expect(mine.vectors).toBeGreaterThan(0);
      expect(await rawCounts(b)).toEqual({ chunks: 0, vectors: 0 });
    });
  });
});

describe(`code search with an embedder that fails (${backend})`, () => {
  let fake: FakeOpenAi;
  let t: TestEngram;
  let org: TestOrg;
  let roots: string;
  let repoId: string;

  beforeAll(async () => {
    fake = await startFakeOpenAi(64);
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-code-search-down-')));
    t = await createTestEngram(
      fakeOpenAiEnv(fake, {
        CODE_ALLOWED_ROOTS: roots,
        EMBEDDING_BREAKER_THRESHOLD: '3',
        EMBEDDING_BREAKER_HALF_OPEN_MS: '200',
      }),
    );
    org = await t.makeOrg();
    makeRepo(path.join(roots, org.slug, 'app'), APP_FILES);
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
    rmSync(roots, { recursive: true, force: true });
  });

  it('indexes chunks without vectors, answers lexically marked degraded, and embeds them on the next run', async () => {
    fake.down(true);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/repos',
      headers: org.auth,
      payload: { path: path.join(roots, org.slug, 'app') },
    });
    expect(res.statusCode).toBe(202);
    repoId = res.json<{ id: string }>().id;
    await t.engram.worker.drain();

    const down = await t.app.inject({
      method: 'POST',
      url: '/v1/code/search',
      headers: org.auth,
      payload: { query: 'parseConfigFile' },
    });
    expect(down.statusCode).toBe(200);
    expect(down.headers['engram-degraded']).toBe('vector');
    const body = down.json<SearchJson>();
    // With a model (here OpenAI's protocol), a search that names no mode is hybrid.
    expect(body.mode).toBe('hybrid');
    expect(body.degraded).toEqual(['vector']);
    expect(body.degradedReasons.vector?.code).toBe('EMBEDDER_UNAVAILABLE');
    expect(body.results[0]?.chunk.name).toBe('parseConfigFile');
    expect(body.results[0]?.signals.vector).toBeUndefined();
    const vectorOnly = await t.app.inject({
      method: 'POST',
      url: '/v1/code/search',
      headers: org.auth,
      payload: { query: 'parseConfigFile', mode: 'vector' },
    });
    expect(vectorOnly.statusCode).toBe(503);

    fake.down(false);
    await new Promise((r) => setTimeout(r, 250)); // the breaker's half-open delay
    const again = await t.app.inject({ method: 'POST', url: `/v1/repos/${repoId}/index`, headers: org.auth });
    expect(again.statusCode).toBe(202);
    await t.engram.worker.drain();
    const up = await t.app.inject({
      method: 'POST',
      url: '/v1/code/search',
      headers: org.auth,
      payload: { query: 'parseConfigFile', mode: 'vector' },
    });
    expect(up.statusCode).toBe(200);
    expect(up.json<SearchJson>().results[0]?.chunk.name).toBe('parseConfigFile');
  });
});
