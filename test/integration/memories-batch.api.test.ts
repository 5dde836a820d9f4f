import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

/**
 * Bulk ingestion: POST /v1/memories/batch (and MCP remember_many) through
 * MemoryService.rememberMany — per-item results in order, dedupe within the
 * batch and against the store, all-or-nothing validation of the envelope,
 * lexical search at once, vectors from batched jobs, one audit entry per
 * batch, the import rate class, and tenant isolation.
 */

type Result = {
  index: number;
  status: 'created' | 'existing' | 'error';
  memory?: { id: string; content: string; scope: Record<string, string> };
  error?: { code: string; message: string };
};
type Batch = { results: Result[]; created: number; existing: number; failed: number };

describe(`POST /v1/memories/batch (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;

  beforeAll(async () => {
    // A small single-request body limit: the batch route has its own (BATCH_BODY_LIMIT_BYTES).
    t = await createTestEngram({ BODY_LIMIT_BYTES: '4096', MEMORY_MAX_CONTENT_CHARS: '2000' });
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  const batch = (items: unknown[], auth = org.auth) =>
    t.app.inject({ method: 'POST', url: '/v1/memories/batch', headers: auth, payload: { items } });
  const contents = async (auth = org.auth): Promise<string[]> =>
    (await t.app.inject({ method: 'GET', url: '/v1/memories?limit=100', headers: auth }))
      .json()
      .items.map((m: { content: string }) => m.content);

  it('answers one result per item, in input order: created, existing or an error for that item', async () => {
    const known = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: org.auth,
      payload: { content: 'Releases are cut on Thursdays', scope: { project: 'ops' } },
    });
    expect(known.statusCode).toBe(201);
    const res = await batch([
      { content: 'The staging database is reset nightly', scope: { project: 'ops' }, tags: ['db', 'db'] },
      { content: 'Releases are cut on Thursdays', scope: { project: 'ops' } },
      { content: '   ' },
      { content: 'x'.repeat(2001) },
      { content: 'Valid backwards', validFrom: '2026-02-01T00:00:00Z', validTo: '2026-01-01T00:00:00Z' },
      { content: 'Feature flags live in the config service', metadata: { team: 'core' }, source: 'chat' },
    ]);
    expect(res.statusCode).toBe(200);
    const body = res.json() as Batch;
    expect(body.results.map((r) => [r.index, r.status])).toEqual([
      [0, 'created'],
      [1, 'existing'],
      [2, 'error'],
      [3, 'error'],
      [4, 'error'],
      [5, 'created'],
    ]);
    expect(body).toMatchObject({ created: 2, existing: 1, failed: 3 });
    expect(body.results[0]?.memory).toMatchObject({ content: 'The staging database is reset nightly', tags: ['db'] });
    expect(body.results[1]?.memory?.id).toBe(known.json().id);
    for (const i of [2, 3, 4]) {
      expect(body.results[i]?.error?.code).toBe('VALIDATION_FAILED');
      expect(body.results[i]?.memory).toBeUndefined();
    }
    expect(body.results[3]?.error?.message).toMatch(/longer than 2000/);
    expect(body.results[4]?.error?.message).toMatch(/validTo/);
    // The invalid items did not block the others.
    expect(await contents()).toEqual(
      expect.arrayContaining(['The staging database is reset nightly', 'Feature flags live in the config service']),
    );
  });

  it('stores a duplicate within the batch once, per scope', async () => {
    const same = { content: 'On-call hands over at 9am', scope: { project: 'ops', user: 'ann' } };
    const res = await batch([same, same, { ...same, tags: ['other tags, same memory'] }, { ...same, scope: {} }]);
    const body = res.json() as Batch;
    expect(body.results.map((r) => r.status)).toEqual(['created', 'existing', 'existing', 'created']);
    const [a, b, c, d] = body.results.map((r) => r.memory?.id);
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(d).not.toBe(a);
    expect(body).toMatchObject({ created: 2, existing: 2, failed: 0 });
    expect((await contents()).filter((x) => x === same.content)).toHaveLength(2);
  });

  it('refuses a malformed envelope or item with 400 naming the item, and stores nothing', async () => {
    const before = (await contents()).length;
    const tooMany = await batch(Array.from({ length: 1001 }, (_, i) => ({ content: `note ${i}` })));
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().error).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: { issues: [{ path: '/items' }] },
    });

    const empty = await batch([]);
    expect(empty.statusCode).toBe(400);

    const badItem = await batch([{ content: 'fine' }, { content: 'fine too' }, { content: 'x', orgId: 'other' }]);
    expect(badItem.statusCode).toBe(400);
    const issues = badItem.json().error.details.issues as Array<{ path: string }>;
    expect(issues.map((i) => i.path)).toEqual([expect.stringMatching(/^\/items\/2/)]);

    const notAList = await t.app.inject({
      method: 'POST',
      url: '/v1/memories/batch',
      headers: org.auth,
      payload: { items: { content: 'x' } },
    });
    expect(notAList.statusCode).toBe(400);
    expect((await contents()).length).toBe(before);
  });

  it('takes 1,000 items, bigger than the single-write body limit, in one request', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({
      content: `Thousand batch note ${i}: ${'padding '.repeat(4)}`,
      scope: { session: 'thousand' },
    }));
    const res = await batch(items);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ created: 1000, existing: 0, failed: 0 });
    const again = await batch(items);
    expect(again.json()).toMatchObject({ created: 0, existing: 1000, failed: 0 });
  });

  it('is found by lexical search at once, and by vector search once its embedding jobs ran', async () => {
    const items = Array.from({ length: 300 }, (_, i) => ({
      content: `Searchable import ${i} mentions the zeppelin${i} hangar`,
      scope: { project: 'zeppelin' },
    }));
    const body = (await batch(items)).json() as Batch;
    expect(body.created).toBe(300);
    const last = body.results.at(-1)?.memory?.id;

    const search = (mode: 'lexical' | 'vector') =>
      t.app.inject({
        method: 'POST',
        url: '/v1/memories/search',
        headers: org.auth,
        payload: { query: 'zeppelin299 hangar', mode, scope: { project: 'zeppelin' }, limit: 5 },
      });
    const lexical = await search('lexical');
    expect(lexical.statusCode).toBe(200);
    expect(lexical.json().results.map((h: { memory: { id: string } }) => h.memory.id)).toContain(last);

    // Vectors come from jobs, one per 128 new memories, not one per memory.
    const jobs = await t.app.inject({
      method: 'GET',
      url: '/v1/jobs?kind=embed_memories&limit=100',
      headers: org.auth,
    });
    const queued = (jobs.json().items as Array<{ payload: { memoryIds: string[] }; state: string }>).filter((j) =>
      j.payload.memoryIds.some((id) => body.results.some((r) => r.memory?.id === id)),
    );
    expect(queued.map((j) => j.payload.memoryIds.length).sort((a, b) => b - a)).toEqual([128, 128, 44]);

    const ids = body.results.map((r) => r.memory?.id ?? '');
    const vectors = async () =>
      (
        await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM memory_embeddings
          WHERE org_id = ${org.orgId} AND memory_id = ANY(${ids}::uuid[])`.execute(t.engram.database.adminDb)
      ).rows[0]?.n;
    // Eventually: the embedded store lets an import finish (a second without batches) before embedding it.
    for (let i = 0; i < 200 && (await vectors()) !== 300; i++) {
      if ((await t.engram.worker.drain()) === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await vectors()).toBe(300);
    const vector = await search('vector');
    expect(vector.json().degraded).toEqual([]);
    expect(vector.json().results.length).toBeGreaterThan(0);
  });

  it('writes one audit entry per batch, with counts and no content', async () => {
    const own = await t.makeOrg();
    await batch([{ content: 'audited one' }, { content: 'audited two' }, { content: ' ' }], own.auth);
    const audit = await t.app.inject({ method: 'GET', url: '/v1/audit?action=memory.import', headers: own.auth });
    const entries = audit.json().items as Array<{ outcome: string; details: Record<string, unknown> }>;
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      outcome: 'success',
      details: { items: 3, created: 2, existing: 0, failed: 1 },
    });
    expect(JSON.stringify(entries[0])).not.toContain('audited one');
  });

  it('needs memories:write', async () => {
    const reader = await org.keyWith(['memories:read']);
    const res = await batch([{ content: 'not allowed' }], { authorization: `Bearer ${reader}` });
    expect(res.statusCode).toBe(403);
  });

  it('does not return a memory of another org, nor deduplicate against it', async () => {
    const [a, b] = [await t.makeOrg(), await t.makeOrg()];
    const mine = (await batch([{ content: 'Org A keeps the blue lantern' }], a.auth)).json() as Batch;
    const theirs = (await batch([{ content: 'Org A keeps the blue lantern' }], b.auth)).json() as Batch;
    expect(mine.results[0]?.status).toBe('created');
    expect(theirs.results[0]?.status).toBe('created');
    expect(theirs.results[0]?.memory?.id).not.toBe(mine.results[0]?.memory?.id);
    const get = await t.app.inject({
      method: 'GET',
      url: `/v1/memories/${mine.results[0]?.memory?.id ?? ''}`,
      headers: b.auth,
    });
    expect(get.statusCode).toBe(404);
    expect(await contents(b.auth)).toEqual(['Org A keeps the blue lantern']);
  });

  describe('MCP remember_many', () => {
    let client: Client;
    let mcpOrg: TestOrg;
    beforeAll(async () => {
      const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
      mcpOrg = await t.makeOrg();
      client = new Client({ name: 'engram-test', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers: mcpOrg.auth } }),
      );
    });
    afterAll(async () => client.close());

    it('stores several memories through the same service, with a result per item', async () => {
      const r = await client.callTool({
        name: 'remember_many',
        arguments: {
          memories: [
            { content: 'The agent prefers short answers', scope: { agent: 'helper' } },
            { content: 'The agent prefers short answers', scope: { agent: 'helper' } },
            { content: '   ' },
            { content: 'Ann reviews the database migrations', tags: ['review'] },
          ],
        },
      });
      expect(r.isError).not.toBe(true);
      const s = r.structuredContent as Batch;
      expect(s.results.map((x) => x.status)).toEqual(['created', 'existing', 'error', 'created']);
      expect(s).toMatchObject({ created: 2, existing: 1, failed: 1 });
      expect((r.content as Array<{ text: string }>)[0]?.text).toMatch(/^2 remembered, 1 already known, 1 not stored/);
      expect(await contents(mcpOrg.auth)).toEqual(
        expect.arrayContaining(['The agent prefers short answers', 'Ann reviews the database migrations']),
      );
      const audit = await t.app.inject({
        method: 'GET',
        url: '/v1/audit?action=mcp.remember_many',
        headers: mcpOrg.auth,
      });
      expect(audit.json().items[0]).toMatchObject({ details: { items: 4, created: 2, existing: 1, failed: 1 } });
    });

    it('keeps the single-memory remember as it was', async () => {
      const r = await client.callTool({ name: 'remember', arguments: { content: 'One at a time still works' } });
      expect(r.structuredContent).toMatchObject({
        deduplicated: false,
        memory: { content: 'One at a time still works' },
      });
    });
  });
});

describe(`the import rate class (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram({
      RATE_LIMIT_ENABLED: 'true',
      // A burst of 60 s of the rate: 10 items and 1 single write, nothing refills noticeably during a test.
      RATE_LIMIT_BURST_SECONDS: '60',
      RATE_LIMIT_IMPORT_PER_MIN: '10',
      RATE_LIMIT_WRITE_PER_MIN: '1',
    });
  });
  afterAll(async () => t?.close());

  const batch = (auth: { authorization: string }, n: number, tag: string) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/memories/batch',
      headers: auth,
      payload: { items: Array.from({ length: n }, (_, i) => ({ content: `${tag} item ${i}` })) },
    });

  it('charges one token per item, then refuses with 429, Retry-After and the error body', async () => {
    const org = await t.makeOrg();
    const first = await batch(org.auth, 6, 'first');
    expect(first.statusCode).toBe(200);
    expect(first.headers['ratelimit-limit']).toBe('10');
    expect(first.headers['ratelimit-remaining']).toBe('4');

    const refused = await batch(org.auth, 6, 'second');
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['ratelimit-remaining']).toBe('4');
    expect(refused.json()).toMatchObject({
      error: { code: 'RATE_LIMITED', details: { class: 'import', limit: 10, cost: 6 } },
    });

    // What fits still goes through; the refused batch stored nothing.
    expect((await batch(org.auth, 4, 'third')).statusCode).toBe(200);
    const list = await t.app.inject({ method: 'GET', url: '/v1/memories?limit=50', headers: org.auth });
    expect((list.json().items as Array<{ content: string }>).some((m) => m.content.startsWith('second'))).toBe(false);
  });

  it('keeps imports out of the write bucket, and single writes out of the import bucket', async () => {
    const org = await t.makeOrg();
    const write = (content: string) =>
      t.app.inject({ method: 'POST', url: '/v1/memories', headers: org.auth, payload: { content } });
    expect((await write('single write')).statusCode).toBe(201);
    expect((await write('second single write')).statusCode).toBe(429);
    const res = await batch(org.auth, 10, 'after writes');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ created: 10 });
  });

  it('answers 413 with the most items a batch may hold when a batch exceeds the burst', async () => {
    const org = await t.makeOrg();
    const res = await batch(org.auth, 11, 'too big');
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { class: 'import', maxItems: 10 } });
    expect((await batch(org.auth, 10, 'just right')).statusCode).toBe(200);
  });

  it('follows an org override of the import class', async () => {
    const org = await t.makeOrg();
    await t.engram.quotas.override(org.orgId, { import: 30 });
    const res = await batch(org.auth, 25, 'override');
    expect(res.statusCode).toBe(200);
    expect(res.headers['ratelimit-limit']).toBe('30');
  });
});
