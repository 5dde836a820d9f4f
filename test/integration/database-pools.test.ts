import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v7 as uuidv7 } from 'uuid';
import type { AuditEvent } from '../../src/domain/audit/audit.types.ts';
import { PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

// The embedded store is one session (its superuser) serving app and system work alike.
const skip = backend === 'pglite';
if (skip) console.log('database-pools.test: skipped on PGlite: one session, no separate app and system logins');

/**
 * Issue 16 item 11: the app's pool must not see across orgs outside
 * `withTenant` (its login is a member of engram_system, and in CI a
 * superuser); system work runs on its own pool, as engram_system.
 */
describe.skipIf(skip)(`database pools: app vs system sessions (${backend})`, () => {
  let t: TestEngram;
  let a: TestOrg;
  let b: TestOrg;
  const count = async (table: 'memories' | 'api_keys' | 'orgs' | 'jobs', db = t.engram.database.db) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(db)).rows[0]?.n;

  beforeAll(async () => {
    t = await createTestEngram();
    a = await t.makeOrg();
    b = await t.makeOrg();
    for (const org of [a, b]) {
      await t.engram.memories.remember(org.ctx, { content: `a memory of ${org.slug}` });
    }
  });
  afterAll(async () => {
    await t.close();
  });

  it('a raw query on the app pool outside withTenant sees no org’s rows', async () => {
    // The rows are there: the owner sees both orgs'.
    expect(await count('memories', t.engram.database.adminDb)).toBeGreaterThanOrEqual(2);
    expect(await count('api_keys', t.engram.database.adminDb)).toBeGreaterThanOrEqual(2);
    expect(await count('memories')).toBe(0);
    expect(await count('api_keys')).toBe(0);
    expect(await count('orgs')).toBe(0);
    const who = await sql<{ u: string }>`SELECT current_user AS u`.execute(t.engram.database.db);
    expect(who.rows[0]?.u).toBe('engram_app');
  });

  it('RESET ROLE and DISCARD ALL on the app pool stay engram_app', async () => {
    const seen = await t.engram.database.db.connection().execute(async (c) => {
      await sql`RESET ROLE`.execute(c);
      const afterReset = await count('memories', c);
      await sql`DISCARD ALL`.execute(c);
      return [afterReset, await count('api_keys', c)];
    });
    expect(seen).toEqual([0, 0]);
  });

  it('the app pool cannot write outside withTenant', async () => {
    await expect(
      sql`INSERT INTO orgs (id, slug, name) VALUES (${uuidv7()}, 'stray', 'Stray')`.execute(t.engram.database.db),
    ).rejects.toThrow(/permission denied|row-level security/);
    await expect(sql`DELETE FROM memories`.execute(t.engram.database.db)).resolves.toMatchObject({
      numAffectedRows: 0n,
    });
    expect(await count('memories', t.engram.database.adminDb)).toBeGreaterThanOrEqual(2);
  });

  it('tenant work still switches to engram_system for its candidate ids', async () => {
    expect(await t.engram.system.canActAsSystem()).toBe(true);
    const hits = await new PgTenantDb(t.engram.database.db, { canActAsSystem: true }).withTenant(
      a.orgId,
      ({ memories }) => memories.searchLexical({ terms: ['memory'], limit: 10 }),
    );
    expect(hits.map((h) => h.memory.content)).toEqual([`a memory of ${a.slug}`]);
  });

  it('system work runs on its own pool, as engram_system: orgs, quotas, audit chain, job queue', async () => {
    const who = await sql<{ u: string }>`SELECT current_user AS u`.execute(t.engram.database.systemDb);
    expect(who.rows[0]?.u).toBe('engram_system');
    expect((await t.engram.system.findOrgs()).map((o) => o.id)).toEqual(expect.arrayContaining([a.orgId, b.orgId]));
    expect((await t.engram.system.findOrgBySlug(b.slug))?.id).toBe(b.orgId);
    await t.engram.system.upsertOrgQuotas(b.orgId, { read: 7, write: 7, search: 7, admin: 7, import: 7 });
    expect((await t.engram.system.findOrgQuotas(b.orgId))?.read).toBe(7);

    const event: AuditEvent = {
      orgId: null,
      actorType: 'anonymous',
      actorId: null,
      authMethod: null,
      action: 'auth.authenticate',
      resourceType: null,
      resourceId: null,
      outcome: 'denied',
      status: 401,
      ip: '192.0.2.1',
      userAgent: null,
      requestId: 'pools-test',
      details: {},
    };
    const entry = await t.engram.audit.record(event);
    expect((await t.engram.system.systemAuditChain().findHead())?.seq).toBe(entry.seq);

    // One job in each org, claimed across orgs by the workers' queue.
    const tenantDb = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
    const ids: string[] = [];
    for (const org of [a, b]) {
      const id = uuidv7();
      ids.push(id);
      await tenantDb.withTenant(org.orgId, ({ jobs }) =>
        jobs.insertJob({ id, kind: 'pools_test', payload: {}, maxAttempts: 1 }),
      );
    }
    expect(await count('jobs')).toBe(0);
    const claimed = await t.engram.jobQueue.claim({ kinds: ['pools_test'], limit: 10, workerId: 'w', leaseMs: 60_000 });
    expect(claimed.map((j) => j.id).sort()).toEqual([...ids].sort());
    expect(new Set(claimed.map((j) => j.orgId))).toEqual(new Set([a.orgId, b.orgId]));
    for (const j of claimed) expect(await t.engram.jobQueue.complete(j, 'w')).toBe(true);
  });
});
