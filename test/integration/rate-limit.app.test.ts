import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnServer, type ServerProcess } from '../helpers/server-process.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  type TestDatabase,
  type TestEngram,
} from '../helpers/test-engram.ts';

/**
 * Rate limits as wired into the real app (the plugin itself is covered in
 * rate-limit.test.ts): defaults from the environment, headers on real routes,
 * the standard error body, nothing stored by a refused write, no audit entry
 * per refusal, the rejection metric, and org overrides.
 */
const LIMITS = {
  RATE_LIMIT_ENABLED: 'true',
  // A burst of 60 s of the rate: 3 writes and 2 searches, nothing refills noticeably during a test.
  RATE_LIMIT_BURST_SECONDS: '60',
  RATE_LIMIT_WRITE_PER_MIN: '3',
  RATE_LIMIT_SEARCH_PER_MIN: '2',
};

describe(`rate limits in the app (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram(LIMITS);
  });
  afterAll(async () => t?.close());

  const write = (auth: { authorization: string }, content: string) =>
    t.app.inject({ method: 'POST', url: '/v1/memories', headers: auth, payload: { content } });

  it('counts writes down in RateLimit-* headers, then refuses with 429, Retry-After and the error body', async () => {
    const org = await t.makeOrg();
    const remaining: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await write(org.auth, `rate limited write ${i}`);
      expect(res.statusCode).toBe(201);
      expect(res.headers['ratelimit-limit']).toBe('3');
      expect(res.headers['x-ratelimit-limit']).toBe('3');
      remaining.push(String(res.headers['ratelimit-remaining']));
    }
    expect(remaining).toEqual(['2', '1', '0']);

    const refused = await write(org.auth, 'one write too many');
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    expect(refused.json()).toMatchObject({
      error: {
        code: 'RATE_LIMITED',
        requestId: refused.headers['x-request-id'],
        details: { class: 'write', limit: 3 },
      },
    });

    // The refused write stored nothing; reads have their own bucket.
    const list = await t.app.inject({ method: 'GET', url: '/v1/memories?limit=50', headers: org.auth });
    expect(list.statusCode).toBe(200);
    expect((list.json() as { items: Array<{ content: string }> }).items.map((m) => m.content).sort()).toEqual([
      'rate limited write 0',
      'rate limited write 1',
      'rate limited write 2',
    ]);
  });

  it('keeps each org in its own bucket', async () => {
    const [a, b] = [await t.makeOrg(), await t.makeOrg()];
    for (let i = 0; i < 3; i++) expect((await write(a.auth, `a ${i}`)).statusCode).toBe(201);
    expect((await write(a.auth, 'a 3')).statusCode).toBe(429);
    expect((await write(b.auth, 'b 0')).statusCode).toBe(201);
  });

  it('does not audit refusals, and counts them in engram_rate_limit_rejections_total', async () => {
    const org = await t.makeOrg();
    const search = () =>
      t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: org.auth, payload: { query: 'anything' } });
    expect((await search()).statusCode).toBe(200);
    expect((await search()).statusCode).toBe(200);
    const before = await rejections('search');
    expect((await search()).statusCode).toBe(429);
    expect((await search()).statusCode).toBe(429);
    expect(await rejections('search')).toBe(before + 2);

    const audit = await t.app.inject({ method: 'GET', url: '/v1/audit?limit=500', headers: org.auth });
    expect(audit.statusCode).toBe(200);
    const statuses = (audit.json() as { items: Array<{ status: number | null }> }).items.map((e) => e.status);
    expect(statuses).not.toContain(429);
  });

  it('applies an org override from org_quotas', async () => {
    const org = await t.makeOrg();
    for (let i = 0; i < 3; i++) expect((await write(org.auth, `before override ${i}`)).statusCode).toBe(201);
    const refused = await write(org.auth, 'refused');
    expect(refused.statusCode).toBe(429);
    // At 3 per minute the next token is 20 s away.
    expect(refused.headers['retry-after']).toBe('20');
    await t.engram.quotas.override(org.orgId, { write: 600 });
    // The bucket keeps its (empty) level but now holds 600 and refills at 10 per second:
    // the next write is allowed at once or at worst a second away, never 20.
    const res = await write(org.auth, 'after override');
    expect(res.headers['ratelimit-limit']).toBe('600');
    if (res.statusCode === 429) expect(res.headers['retry-after']).toBe('1');
    else expect(res.statusCode).toBe(201);
  });

  it('does not limit public routes', async () => {
    for (let i = 0; i < 10; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/health/live' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['ratelimit-limit']).toBeUndefined();
    }
  });

  async function rejections(cls: string): Promise<number> {
    const text = await t.engram.metrics.registry.metrics();
    const m = new RegExp(`^engram_rate_limit_rejections_total\\{class="${cls}"\\} (\\d+)$`, 'm').exec(text);
    return m?.[1] === undefined ? 0 : Number(m[1]);
  }
});

/**
 * Two server processes on one PostgreSQL database and one Valkey: the bucket
 * lives in Valkey, so an org gets its limit once, not once per replica.
 * Needs PostgreSQL and Valkey (the `integration` project); two processes
 * cannot share an embedded store.
 */
const replicas = backend === 'postgres' && process.env.VALKEY_URL !== undefined;
if (!replicas) {
  console.log(
    'rate-limit.app: the two-replica test needs the integration project (PostgreSQL + Valkey); skipped on the embedded store',
  );
}

describe.skipIf(!replicas)('rate limits across two server processes sharing Valkey', () => {
  let db: TestDatabase;
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    await db?.drop();
  });

  it('spends one org-wide bucket from both replicas', async () => {
    const env = {
      ...process.env,
      ...db.env,
      ...LIMITS,
      RATE_LIMIT_WRITE_PER_MIN: '10',
      LOG_LEVEL: 'info',
      REEMBED_INTERVAL_MS: '0',
      PORT: '0',
    };
    // One after the other: the first creates the default org and its admin key.
    servers.push(await spawnServer(env));
    servers.push(await spawnServer(env));
    const key = /admin API key \(shown once\):\s+(egm_\S+)/.exec(servers[0]?.output() ?? '')?.[1];
    expect(key).toBeDefined();
    const run = randomUUID();
    const write = async (replica: number, i: number) => {
      const server = servers[replica];
      if (server === undefined) throw new Error('no server');
      const res = await fetch(`${server.url}/v1/memories`, {
        method: 'POST',
        headers: { authorization: `Bearer ${String(key)}`, 'content-type': 'application/json' },
        body: JSON.stringify({ content: `replica write ${run} ${i}` }),
      });
      return res.status;
    };

    // Ten writes alternating between replicas spend the org's one bucket of ten…
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push(await write(i % 2, i));
    expect(statuses).toEqual(Array.from({ length: 10 }, () => 201));
    // …so both refuse the next one. Buckets per process would each still hold five.
    expect(await write(0, 10)).toBe(429);
    expect(await write(1, 11)).toBe(429);
    // Concurrent bursts are atomic too: nothing more gets through on either replica.
    const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => write(i % 2, 12 + i)));
    expect(burst.filter((s) => s === 201)).toHaveLength(0);
  });
});
