import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';
import { fakeOpenAiEnv, startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.ts';
import { sql } from 'kysely';
import { PgMemoryStore, PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';

const NOTES = [
  'The payment service retries Stripe webhooks with exponential backoff',
  'Alice prefers tabs over spaces and dark mode in her editor',
  'Postgres backups run nightly at 02:00 UTC to the cold storage bucket',
  'The mobile app uses React Native with Expo for builds',
  'Incident 42: the cache stampede was fixed by adding request coalescing',
  'Deployments to production require two approvals in the release channel',
];

interface Hit {
  memory: { id: string; content: string; scope: Record<string, string> };
  score: number;
  signals: { lexical?: { rank: number; score: number }; vector?: { rank: number; score: number } };
}

describe(`search (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  const search = async (payload: object, o: TestOrg = org) =>
    t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: o.auth, payload });

  beforeAll(async () => {
    t = await createTestEngram();
    org = await t.makeOrg();
    for (const [i, content] of NOTES.entries()) {
      await t.engram.memories.remember(org.ctx, {
        content,
        scope: { project: i % 2 === 0 ? 'core' : 'apps' },
        tags: [i < 3 ? 'old' : 'new'],
      });
    }
  });
  afterAll(async () => t.close());

  it('lexical mode finds keyword matches and says so', async () => {
    const res = await search({ query: 'postgres backups', mode: 'lexical' });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { results: Hit[]; mode: string; lexicalRanker: string };
    expect(body.mode).toBe('lexical');
    expect(body.lexicalRanker).toBe('bm25');
    expect(body.results[0]?.memory.content).toContain('Postgres backups');
    expect(body.results[0]?.signals.lexical?.rank).toBe(1);
    expect(body.results[0]?.signals.vector).toBeUndefined();
    expect(body.results.every((h) => h.memory.content !== NOTES[1])).toBe(true);
  });

  it('vector mode ranks by embedding similarity, including partial-word overlap', async () => {
    const res = await search({ query: 'webhook retry backoff', mode: 'vector', limit: 3 });
    const body = res.json<{ results: Hit[] }>();
    expect(body.results).toHaveLength(3);
    expect(body.results[0]?.memory.content).toBe(NOTES[0]);
    expect(body.results[0]?.signals.vector?.score).toBeGreaterThan(body.results[1]?.signals.vector?.score ?? 1);
    expect(body.results[0]?.signals.lexical).toBeUndefined();
  });

  it('hybrid mode fuses the signals by score', async () => {
    const res = await search({ query: 'cache stampede incident' });
    const body = res.json() as { results: Hit[]; mode: string; degraded: string[] };
    expect(body.mode).toBe('hybrid');
    expect(body.degraded).toEqual([]);
    expect(body).toHaveProperty('degradedReasons', {});
    const top = body.results[0];
    expect(top?.memory.content).toBe(NOTES[4]);
    expect(top?.signals.lexical?.rank).toBe(1);
    expect(top?.signals.vector?.rank).toBe(1);
    // Best lexical and best vector score: 1 (BM25 scaled) + the vector weight (0.02 for builtin).
    expect(top?.score).toBeCloseTo(1.02, 10);
    const scores = body.results.map((h) => h.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
  });

  it('filters by scope and tags', async () => {
    const scoped = (await search({ query: 'the', mode: 'vector', limit: 50, scope: { project: 'apps' } })).json() as {
      results: Hit[];
    };
    expect(scoped.results.length).toBe(3);
    expect(scoped.results.every((h) => h.memory.scope.project === 'apps')).toBe(true);
    const tagged = (await search({ query: 'backups deployments', limit: 50, filters: { tags: ['new'] } })).json() as {
      results: Hit[];
    };
    expect(tagged.results.map((h) => h.memory.content)).not.toContain(NOTES[2]);
    expect(tagged.results.map((h) => h.memory.content)).toContain(NOTES[5]);
  });

  it('finds memories behind a selective filter even when they rank outside the approximate candidates', async () => {
    const o = await t.makeOrg();
    const topics = ['billing', 'search', 'deploy', 'oncall', 'backup', 'latency', 'cache', 'queue'];
    for (let i = 0; i < 260; i++) {
      await t.engram.memories.remember(o.ctx, {
        content: `${topics[i % 8]} note ${i}: the ${topics[(i * 3) % 8]} service and the ${topics[(i * 5) % 8]} runbook`,
      });
    }
    const rare = await t.engram.memories.remember(o.ctx, { content: 'zebra giraffe savanna', scope: { user: 'rare' } });
    const res = await search(
      { query: 'billing service runbook', mode: 'vector', limit: 5, scope: { user: 'rare' } },
      o,
    );
    expect(res.statusCode).toBe(200);
    expect(res.json().results.map((h: Hit) => h.memory.id)).toEqual([rare.memory.id]);
  });

  it('ranks with the per-org BM25 with or without the engram_system role, never crossing orgs', async () => {
    const other = await t.makeOrg();
    await t.engram.memories.remember(other.ctx, { content: 'Postgres backups of the other org' });
    for (const canActAsSystem of [true, false]) {
      const tenantDb = new PgTenantDb(t.engram.database.db, { canActAsSystem });
      const hits = await tenantDb.withTenant(org.orgId, ({ memories }) =>
        memories.searchLexical({ terms: ['postgres', 'backups', 'nightly'], limit: 10 }),
      );
      expect(hits[0]?.memory.content).toBe(NOTES[2]);
      expect(hits.every((h) => h.memory.content !== 'Postgres backups of the other org')).toBe(true);
      expect(hits[0]?.score).toBeGreaterThan(0);
      // The role switch is undone: the rest of the transaction runs under RLS again.
      await t.engram.database.db.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${org.orgId}, true)`.execute(
          tx,
        );
        await new PgMemoryStore(tx, org.orgId, canActAsSystem).searchLexical({ terms: ['postgres'], limit: 1 });
        const who = await sql<{
          u: string;
          n: number;
        }>`SELECT current_user AS u, (SELECT count(*)::int FROM memories) AS n`.execute(tx);
        expect(who.rows[0]).toEqual({ u: 'engram_app', n: NOTES.length });
      });
    }
  });

  it('enforces query length and result limits with 400', async () => {
    expect((await search({ query: 'x'.repeat(2_001) })).statusCode).toBe(400);
    expect((await search({ query: 'x', limit: 101 })).statusCode).toBe(400);
    expect((await search({ query: '   ' })).statusCode).toBe(400);
    expect((await search({ query: 'x', mode: 'semantic' })).statusCode).toBe(400);
  });

  it('finds an updated memory by its new content, not its old one', async () => {
    const o = await t.makeOrg();
    const { memory } = await t.engram.memories.remember(o.ctx, { content: 'kubernetes cluster autoscaler' });
    await t.engram.memories.update(o.ctx, memory.id, { content: 'terraform module registry' });
    const old = (await search({ query: 'kubernetes autoscaler', mode: 'lexical' }, o)).json<{ results: Hit[] }>();
    expect(old.results).toHaveLength(0);
    const fresh = (await search({ query: 'terraform registry', mode: 'vector', limit: 1 }, o)).json() as {
      results: Hit[];
    };
    expect(fresh.results[0]?.memory.id).toBe(memory.id);
    expect(fresh.results[0]?.signals.vector?.score).toBeGreaterThan(0.5);
  });
});

describe(`search with an OpenAI-compatible embedder that fails (${backend})`, () => {
  let fake: FakeOpenAi;
  let t: TestEngram;
  let org: TestOrg;

  beforeAll(async () => {
    fake = await startFakeOpenAi(64);
    t = await createTestEngram(
      fakeOpenAiEnv(fake, {
        EMBEDDING_BREAKER_THRESHOLD: '3',
        EMBEDDING_BREAKER_HALF_OPEN_MS: '200',
      }),
    );
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it('degrades hybrid search to lexical, stores writes, and catches up by re-embedding', async () => {
    await t.engram.memories.remember(org.ctx, { content: 'the build cache lives on the CI runner' });
    fake.down(true);
    const written = await t.engram.memories.remember(org.ctx, { content: 'flaky tests are quarantined weekly' });
    expect(written.created).toBe(true);
    expect(written.embedded).toBe(false);

    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/memories/search',
      headers: org.auth,
      payload: { query: 'flaky tests' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['engram-degraded']).toBe('vector');
    const body = res.json() as {
      degraded: string[];
      degradedReasons: Record<string, { code: string; message: string }>;
      results: Hit[];
    };
    expect(body.degraded).toEqual(['vector']);
    expect(body.degradedReasons).toEqual({
      vector: { code: 'EMBEDDER_UNAVAILABLE', message: expect.stringMatching(/unavailable/) },
    });
    expect(body.results[0]?.memory.id).toBe(written.memory.id);
    expect(body.results[0]?.signals.vector).toBeUndefined();

    const vectorOnly = await t.app.inject({
      method: 'POST',
      url: '/v1/memories/search',
      headers: org.auth,
      payload: { query: 'flaky', mode: 'vector' },
    });
    expect(vectorOnly.statusCode).toBe(503);
    expect(vectorOnly.json().error.code).toBe('EMBEDDER_UNAVAILABLE');
    expect(t.engram.embedder.breakerState).toBe('open');

    fake.down(false);
    await new Promise((r) => setTimeout(r, 250)); // half-open after 200 ms
    const report = await t.engram.reembed.run();
    expect(report.error).toBeUndefined();
    expect(report.embedded).toBe(1);
    const after = await t.app.inject({
      method: 'POST',
      url: '/v1/memories/search',
      headers: org.auth,
      payload: { query: 'flaky tests quarantined', mode: 'vector', limit: 1 },
    });
    expect(after.statusCode).toBe(200);
    expect(after.json().results[0].memory.id).toBe(written.memory.id);
    expect(t.engram.embedder.breakerState).toBe('closed');
  });

  it('reports a dimension change of the model as a clear error, never an empty result', async () => {
    fake.setDimension(32);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/memories/search',
      headers: org.auth,
      payload: { query: 'something never seen before 1234', mode: 'vector' },
    });
    fake.setDimension(64);
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('EMBEDDING_DIMENSION_MISMATCH');
    expect(res.json().error.message).toMatch(/dimension 64 .* produced 32/);
  });

  it('refuses to start on a store whose model was registered with another dimension', async () => {
    await expect(
      t.engram.system.registerEmbeddingModel({ name: 'fake-embed', provider: 'openai', dimension: 32 }),
    ).rejects.toMatchObject({
      code: 'EMBEDDING_DIMENSION_MISMATCH',
    });
  });
});
