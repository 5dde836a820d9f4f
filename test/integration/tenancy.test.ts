import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

describe(`tenant isolation (${backend})`, () => {
  let t: TestEngram;
  let a: TestOrg;
  let b: TestOrg;
  let memoryOfA: string;

  beforeAll(async () => {
    t = await createTestEngram();
    a = await t.makeOrg();
    b = await t.makeOrg();
    const r = await t.engram.memories.remember(a.ctx, { content: 'secret plan of org A', tags: ['a'] });
    memoryOfA = r.memory.id;
    await t.engram.memories.remember(b.ctx, { content: 'ordinary note of org B' });
  });
  afterAll(async () => t.close());

  it('a query as the app role without org context sees nothing', async () => {
    const rows = await t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SET LOCAL ROLE engram_app`.execute(tx);
      const m = await sql<{ n: number }>`SELECT count(*)::int AS n FROM memories`.execute(tx);
      const k = await sql<{ n: number }>`SELECT count(*)::int AS n FROM api_keys`.execute(tx);
      const o = await sql<{ n: number }>`SELECT count(*)::int AS n FROM orgs`.execute(tx);
      return [m.rows[0]?.n, k.rows[0]?.n, o.rows[0]?.n];
    });
    expect(rows).toEqual([0, 0, 0]);
  });

  it('RLS limits raw SQL to the org set for the transaction, even without a WHERE on org_id', async () => {
    const seen = await t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${b.orgId}, true)`.execute(
        tx,
      );
      return (await sql<{ id: string }>`SELECT id FROM memories`.execute(tx)).rows.map((r) => r.id);
    });
    expect(seen.length).toBe(1);
    expect(seen).not.toContain(memoryOfA);
  });

  it('RLS refuses to write a row into another org', async () => {
    await expect(
      t.engram.database.db.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${b.orgId}, true)`.execute(
          tx,
        );
        await sql`INSERT INTO memories (org_id, id, scope_key, content, content_hash)
                  VALUES (${a.orgId}, gen_random_uuid(), '[]', 'x', 'h')`.execute(tx);
      }),
    ).rejects.toThrow(/row-level security/);
  });

  it('raw UPDATE and DELETE across orgs affect no row', async () => {
    const counts = await t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${b.orgId}, true)`.execute(
        tx,
      );
      const u = await sql`UPDATE memories SET content = 'pwned' WHERE id = ${memoryOfA}`.execute(tx);
      const d = await sql`DELETE FROM memories WHERE id = ${memoryOfA}`.execute(tx);
      return [u.numAffectedRows, d.numAffectedRows];
    });
    expect(counts).toEqual([0n, 0n]);
    expect((await t.engram.memories.get(a.ctx, memoryOfA)).content).toBe('secret plan of org A');
  });

  it('does not return a memory of another org', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/memories/${memoryOfA}`, headers: b.auth });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('MEMORY_NOT_FOUND');
  });

  it('does not update, delete or show the history of a memory of another org', async () => {
    const patch = await t.app.inject({
      method: 'PATCH',
      url: `/v1/memories/${memoryOfA}`,
      headers: b.auth,
      payload: { content: 'pwned' },
    });
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/memories/${memoryOfA}`, headers: b.auth });
    const hist = await t.app.inject({ method: 'GET', url: `/v1/memories/${memoryOfA}/history`, headers: b.auth });
    expect([patch.statusCode, del.statusCode, hist.statusCode]).toEqual([404, 404, 404]);
    const still = await t.app.inject({ method: 'GET', url: `/v1/memories/${memoryOfA}`, headers: a.auth });
    expect(still.json().content).toBe('secret plan of org A');
    expect(still.json().version).toBe(1);
  });

  it('does not list or find memories of another org', async () => {
    const list = await t.app.inject({ method: 'GET', url: '/v1/memories?limit=100', headers: b.auth });
    expect(list.json().items.map((m: { id: string }) => m.id)).not.toContain(memoryOfA);
    for (const mode of ['lexical', 'vector', 'hybrid']) {
      const s = await t.app.inject({
        method: 'POST',
        url: '/v1/memories/search',
        headers: b.auth,
        payload: { query: 'secret plan', mode },
      });
      expect(s.statusCode).toBe(200);
      expect(s.json().results.map((r: { memory: { id: string } }) => r.memory.id)).not.toContain(memoryOfA);
    }
  });

  it('does not list or revoke API keys of another org', async () => {
    const keysOfA = await t.engram.apiKeys.list(a.ctx);
    const idOfA = keysOfA[0]?.id ?? '';
    const list = await t.app.inject({ method: 'GET', url: '/v1/keys', headers: b.auth });
    expect(list.json().items.map((k: { id: string }) => k.id)).not.toContain(idOfA);
    const revoke = await t.app.inject({ method: 'DELETE', url: `/v1/keys/${idOfA}`, headers: b.auth });
    expect(revoke.statusCode).toBe(404);
    const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers: a.auth });
    expect(me.statusCode).toBe(200);
  });

  it('takes the org only from the key, never from the request', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { ...b.auth, 'x-org-id': a.orgId },
      payload: { content: 'which org am I in?', orgId: a.orgId },
    });
    expect(res.statusCode).toBe(400);
    const ok = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { ...b.auth, 'x-org-id': a.orgId },
      payload: { content: 'which org am I in?' },
    });
    expect(ok.statusCode).toBe(201);
    await expect(t.engram.memories.get(a.ctx, ok.json().id)).rejects.toMatchObject({ code: 'MEMORY_NOT_FOUND' });
  });

  it('migrate verify finds RLS enabled and forced on every tenant table', async () => {
    const r = await t.engram.migrator.verify();
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
  });
});
