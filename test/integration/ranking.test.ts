import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';
import { BM25 } from '../../src/storage/postgres/tenant-db.pg.ts';

// Ranking invariants of memory search on a small corpus the test builds: the
// same BM25 on both engines, with each org's own statistics. The LoCoMo
// figures live in `npm run bench:recall`, not here.

interface Hit {
  memory: { id: string; content: string };
  score: number;
  signals: Record<string, { rank: number; score: number } | undefined>;
}

describe(`ranking (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t.close());

  const search = async (o: TestOrg, payload: object): Promise<Hit[]> => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: o.auth, payload });
    expect(res.statusCode).toBe(200);
    return res.json<{ results: Hit[] }>().results;
  };
  const write = async (o: TestOrg, content: string, scope: Record<string, string> = {}) =>
    (await t.engram.memories.remember(o.ctx, { content, scope })).memory;

  it('scores with BM25 from the org corpus: IDF, term frequency and length normalisation', async () => {
    const o = await t.makeOrg();
    // Distinct lexemes (the document length): zebra, lion | zebra, tiger, eleph | lion, tiger.
    await write(o, 'zebra zebra lion');
    await write(o, 'zebra tiger elephant');
    await write(o, 'lion tiger');
    const hits = await search(o, { query: 'zebra', mode: 'lexical' });
    const { k1, b } = BM25;
    const n = 3;
    const avg = (2 + 3 + 2) / 3;
    const idf = Math.log(1 + (n - 2 + 0.5) / (2 + 0.5));
    const bm25 = (tf: number, len: number) => (idf * (tf * (k1 + 1))) / (tf + k1 * (1 - b + (b * len) / avg));
    expect(hits.map((h) => h.memory.content)).toEqual(['zebra zebra lion', 'zebra tiger elephant']);
    expect(hits[0]?.score).toBeCloseTo(bm25(2, 2), 9);
    expect(hits[1]?.score).toBeCloseTo(bm25(1, 3), 9);
  });

  it('ranks a memory with every query term above one with a single term', async () => {
    const o = await t.makeOrg();
    await write(o, 'Backups of the billing database');
    const full = await write(o, 'Nightly backups of the billing database to cold storage');
    await write(o, 'Cold storage pricing tiers');
    const hits = await search(o, { query: 'nightly cold storage backups', mode: 'lexical' });
    expect(hits[0]?.memory.id).toBe(full.id);
  });

  it('matches stemmed forms (deploying finds deployments)', async () => {
    const o = await t.makeOrg();
    const m = await write(o, 'Deployments to production need two approvals');
    await write(o, 'The cafeteria opens at noon');
    const hits = await search(o, { query: 'deploying', mode: 'lexical' });
    expect(hits.map((h) => h.memory.id)).toEqual([m.id]);
  });

  it('ranks a rare term above a common one', async () => {
    const o = await t.makeOrg();
    for (let i = 0; i < 12; i++) await write(o, `service note ${i} about the service`);
    const rare = await write(o, 'the zeppelin hangar');
    const hits = await search(o, { query: 'service zeppelin', mode: 'lexical' });
    expect(hits[0]?.memory.id).toBe(rare.id);
  });

  it('leaves every score in org B unchanged when org A writes, updates and deletes the same terms', async () => {
    const a = await t.makeOrg();
    const bOrg = await t.makeOrg();
    for (const c of ['kafka consumer lag alert', 'the kafka cluster upgrade plan', 'lag in the search index', 'plan'])
      await write(bOrg, c);
    const queries = ['kafka lag', 'upgrade plan', 'search index lag alert'];
    const scores = async () =>
      Promise.all(
        queries.flatMap((query) =>
          ['lexical', 'hybrid'].map(async (mode) =>
            (await search(bOrg, { query, mode })).map((h) => [h.memory.id, h.score]),
          ),
        ),
      );
    const before = await scores();
    const written = [];
    for (let i = 0; i < 30; i++) written.push(await write(a, `kafka kafka lag plan upgrade ${i}`));
    expect(await scores()).toEqual(before);
    await t.engram.memories.update(a.ctx, written[0]!.id, { content: 'search index alert' });
    for (const m of written.slice(1, 10)) await t.engram.memories.forget(a.ctx, m.id);
    expect(await scores()).toEqual(before);
  });

  it("keeps an org's statistics exact through updates and deletes", async () => {
    const o = await t.makeOrg();
    await write(o, 'alpha beta');
    await write(o, 'beta gamma delta');
    const before = (await search(o, { query: 'beta gamma', mode: 'lexical' })).map((h) => h.score);
    const extra = await write(o, 'beta beta epsilon');
    await t.engram.memories.update(o.ctx, extra.id, { content: 'gamma zeta' });
    expect((await search(o, { query: 'beta gamma', mode: 'lexical' })).map((h) => h.score)).not.toEqual(before);
    await t.engram.memories.forget(o.ctx, extra.id);
    const after = (await search(o, { query: 'beta gamma', mode: 'lexical' })).map((h) => h.score);
    expect(after).toHaveLength(before.length);
    after.forEach((s, i) => expect(s).toBeCloseTo(before[i] ?? Number.NaN, 12));
  });

  it('scores the same from the postings (no filter) as inside a scope, and keeps them through update, delete and org deletion', async () => {
    const o = await t.makeOrg();
    const scope = { user: 'u-1' };
    await write(o, 'the deploy pipeline failed on the staging cluster', scope);
    await write(o, 'staging cluster nodes were drained before the deploy', scope);
    const moved = await write(o, 'deploy notes: staging staging staging', scope);
    await write(o, 'lunch menu for friday', scope);
    const query = 'deploy staging cluster';
    const unscoped = await search(o, { query, mode: 'lexical' });
    const scoped = await search(o, { query, mode: 'lexical', scope });
    expect(unscoped.map((h) => h.memory.id)).toEqual(scoped.map((h) => h.memory.id));
    unscoped.forEach((h, i) => expect(h.score).toBeCloseTo(scoped[i]?.score ?? Number.NaN, 12));
    expect(unscoped).toHaveLength(3);

    await t.engram.memories.update(o.ctx, moved.id, { content: 'release notes for the mobile app' });
    expect((await search(o, { query: 'staging', mode: 'lexical' })).map((h) => h.memory.id)).not.toContain(moved.id);
    expect((await search(o, { query: 'mobile release', mode: 'lexical' })).map((h) => h.memory.id)).toEqual([moved.id]);
    await t.engram.memories.forget(o.ctx, moved.id);
    expect(await search(o, { query: 'mobile release', mode: 'lexical' })).toEqual([]);

    const postings = async () =>
      Number(
        (
          await sql<{ n: number }>`SELECT count(*)::int AS n FROM memory_postings WHERE org_id = ${o.orgId}`.execute(
            t.engram.database.adminDb,
          )
        ).rows[0]?.n,
      );
    expect(await postings()).toBeGreaterThan(0);
    await sql`DELETE FROM orgs WHERE id = ${o.orgId}`.execute(t.engram.database.adminDb);
    expect(await postings()).toBe(0);
  });

  it('has the maintenance VACUUM keep the postings index-only, even with its counters reset', async () => {
    const o = await t.makeOrg();
    const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
    await t.engram.memories.rememberMany(
      o.ctx,
      Array.from({ length: 400 }, (_, i) => ({ content: `${words.join(` w${i} `)} note ${i}` })),
    );
    const db = t.engram.database.adminDb;
    await sql`ANALYZE memory_postings`.execute(db);
    // As after a restart of the embedded store: the insert counters start from zero.
    await sql`SELECT pg_stat_reset()`.execute(db);
    expect(await t.engram.system.vacuum()).toContain('memory_postings');
    const vm = await sql<{ pages: number; visible: number }>`
      SELECT relpages AS pages, relallvisible AS visible FROM pg_class WHERE relname = 'memory_postings'`.execute(db);
    expect(Number(vm.rows[0]?.visible)).toBeGreaterThanOrEqual(0.9 * Number(vm.rows[0]?.pages));
    expect(await t.engram.system.vacuum()).not.toContain('memory_postings');
  });

  it('brings the turn next to a lexical hit in hybrid search, marked as context', async () => {
    const o = await t.makeOrg();
    const chat = { user: 'chat-1' };
    await write(o, 'Ana: Morning! How was the trip to the coast?', chat);
    const q = await write(o, 'Ben: Where did you go hiking last weekend?', chat);
    const answer = await write(o, 'Ana: Up Mount Tamalpais, the view was stunning', chat);
    await write(o, 'Ben: Nice. Did you see the new espresso machine?', chat);
    // Same words, another conversation: not a neighbour of the question.
    await write(o, 'Cy: The weekend shift rota is out', { user: 'chat-2' });
    const lexical = await search(o, { query: 'where did you go hiking last weekend', mode: 'lexical', scope: chat });
    expect(lexical.map((h) => h.memory.id)).not.toContain(answer.id);
    const hits = await search(o, { query: 'where did you go hiking last weekend', scope: chat });
    expect(hits[0]?.memory.id).toBe(q.id);
    const found = hits.find((h) => h.memory.id === answer.id);
    expect(found?.signals.context?.score).toBeGreaterThan(0);
  });

  it('keeps turns further apart than the window, or in another scope, out of the context', async () => {
    const o = await t.makeOrg();
    const chat = { user: 'chat-3' };
    const q = await t.engram.memories.remember(o.ctx, {
      content: 'Ben: Which trail did you take on the hike?',
      scope: chat,
      validFrom: new Date('2024-05-01T10:00:00Z'),
    });
    const later = await t.engram.memories.remember(o.ctx, {
      content: 'Ana: The Dipsea one',
      scope: chat,
      validFrom: new Date('2024-05-09T10:00:00Z'),
    });
    await write(o, 'Ana: Dipsea, I think', { user: 'chat-4' });
    const hits = await search(o, { query: 'trail hike' });
    expect(hits[0]?.memory.id).toBe(q.memory.id);
    // The vector signal may still list them; context never does.
    expect(hits.filter((h) => h.signals.context !== undefined)).toEqual([]);
    expect(hits.find((h) => h.memory.id === later.memory.id)?.signals.lexical).toBeUndefined();
  });
});

describe(`graph signal (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t.close());

  it('reaches a memory through an entity the graph relates to one the query names', async () => {
    const o = await t.makeOrg();
    const scope = { project: 'team' };
    await t.engram.graph.createEntities(
      o.ctx,
      [
        { name: 'Alice', entityType: 'person', observations: ['works on billing'] },
        { name: 'Bob', entityType: 'person', observations: ['leads the billing team'] },
      ],
      scope,
    );
    await t.engram.graph.createRelations(o.ctx, [{ from: 'Bob', to: 'Alice', relationType: 'manages' }], scope);
    const bob = (await t.engram.memories.remember(o.ctx, { content: 'Bob loves sailing on weekends', scope })).memory;
    await t.engram.memories.remember(o.ctx, { content: 'The office plants need water', scope });
    const search = async (payload: object) =>
      (await t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: o.auth, payload })).json<{
        results: Hit[];
      }>().results;
    const query = "what does Alice's manager enjoy";
    expect((await search({ query, mode: 'lexical', scope })).map((h) => h.memory.id)).not.toContain(bob.id);
    const hits = await search({ query, scope });
    expect(hits[0]?.memory.id).toBe(bob.id);
    expect(hits[0]?.signals.graph?.rank).toBe(1);
    // Another scope has no graph: no graph signal there.
    const other = await search({ query, scope: { project: 'elsewhere' } });
    expect(other.every((h) => h.signals.graph === undefined)).toBe(true);
  });
});
