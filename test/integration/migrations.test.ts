import { cpSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/storage/postgres/database.ts';
import { DEFAULT_MIGRATIONS_DIR, Migrator, loadMigrations, snapshotAll } from '../../src/storage/postgres/migrator.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  testConfig,
  type TestDatabase,
} from '../helpers/test-engram.ts';

async function schemaFingerprint(db: Database): Promise<string> {
  const r = await sql<{ f: string }>`
    SELECT string_agg(x, E'\n' ORDER BY x) AS f FROM (
      SELECT format('col %s.%s %s %s', table_name, column_name, data_type, is_nullable) AS x
        FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> 'engram_migrations'
      UNION ALL SELECT format('idx %s %s', tablename, indexdef) FROM pg_indexes WHERE schemaname = current_schema()
        AND indexname NOT LIKE 'memory_embeddings_hnsw_%'
      UNION ALL SELECT format('pol %s %s %s %s', tablename, policyname, roles::text, qual) FROM pg_policies WHERE schemaname = current_schema()
    ) s`.execute(db.adminDb);
  return r.rows[0]?.f ?? '';
}

describe(`${Migrator.name} (${backend})`, () => {
  let tdb: TestDatabase;
  let db: Database;
  let dir: string;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    db = await openDatabase(testConfig(tdb.env).store);
    dir = mkdtempSync(path.join(tmpdir(), 'engram-migrations-'));
    cpSync(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
  });
  afterAll(async () => {
    await db.close();
    await tdb.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies every migration, then rolls all back and re-applies to the same schema', async () => {
    const m = new Migrator(db.adminDb, db.kind, dir);
    const versions = loadMigrations(dir).map((x) => x.version);
    expect(versions.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    const up = await m.up();
    expect(up.map((r) => r.version)).toEqual(versions);
    expect(await m.isCurrent()).toBe(true);
    const first = await schemaFingerprint(db);
    expect(first).toContain('col memories.content text NO');

    const down = await m.down(100);
    expect(down.map((r) => r.version)).toEqual([...versions].reverse());
    expect((await m.status()).every((s) => s.state === 'pending')).toBe(true);
    expect(await schemaFingerprint(db)).not.toContain('memories');

    await m.up();
    expect(await schemaFingerprint(db)).toBe(first);
  });

  it('rolls back a failing migration in its transaction and reports which one', async () => {
    writeFileSync(
      path.join(dir, '9990_broken.sql'),
      '-- Why: a test migration that fails halfway.\n-- migrate:up\nCREATE TABLE half_done (id int);\nSELECT 1/0;\n-- migrate:down\nDROP TABLE half_done;\n',
    );
    const m = new Migrator(db.adminDb, db.kind, dir);
    await expect(m.up()).rejects.toMatchObject({
      code: 'MIGRATION_FAILED',
      message: expect.stringMatching(/9990_broken \(up\) failed and was rolled back: division by zero/),
    });
    const exists = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'half_done'`.execute(db.adminDb);
    expect(exists.rows[0]?.n).toBe(0);
    expect((await m.status()).find((s) => s.version === 9990)?.state).toBe('pending');
    rmSync(path.join(dir, '9990_broken.sql'));
  });

  it('refuses a migration that changes existing rows it did not declare, and accepts it once declared', async () => {
    const orgId = '01a2013f-0000-7000-8000-000000000001';
    await sql`INSERT INTO orgs (id, slug, name) VALUES (${orgId}, 'mig-test', 'Mig')`.execute(db.adminDb);
    const body =
      "-- migrate:up\nUPDATE orgs SET name = name || ' (renamed)';\n-- migrate:down\nUPDATE orgs SET name = replace(name, ' (renamed)', '');\n";
    writeFileSync(path.join(dir, '9991_rename.sql'), `-- Why: a test migration that rewrites data.\n${body}`);
    const m = new Migrator(db.adminDb, db.kind, dir);
    await expect(m.up()).rejects.toMatchObject({
      message: expect.stringMatching(/changed data in orgs .*migrate:rewrites orgs/),
    });
    const name = await sql<{ name: string }>`SELECT name FROM orgs WHERE id = ${orgId}`.execute(db.adminDb);
    expect(name.rows[0]?.name).toBe('Mig');

    writeFileSync(
      path.join(dir, '9991_rename.sql'),
      `-- Why: a test migration that rewrites data.\n-- migrate:rewrites orgs\n${body}`,
    );
    const m2 = new Migrator(db.adminDb, db.kind, dir);
    await m2.up();
    const renamed = await sql<{ name: string }>`SELECT name FROM orgs WHERE id = ${orgId}`.execute(db.adminDb);
    expect(renamed.rows[0]?.name).toBe('Mig (renamed)');
    await m2.down(1);
    rmSync(path.join(dir, '9991_rename.sql'));
    await sql`DELETE FROM orgs WHERE id = ${orgId}`.execute(db.adminDb);
  });

  it('verify reports a migration file edited after it was applied', async () => {
    appendFileSync(path.join(dir, '0004_bm25.sql'), '\n-- an innocent-looking edit\n');
    const r = await new Migrator(db.adminDb, db.kind, dir).verify();
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(/0004_bm25 was edited/);
    cpSync(path.join(DEFAULT_MIGRATIONS_DIR, '0004_bm25.sql'), path.join(dir, '0004_bm25.sql'));
    expect((await new Migrator(db.adminDb, db.kind, dir).verify()).ok).toBe(true);
  });
});

describe(`migrate down then up with data (${backend})`, () => {
  it('grants the operability scopes (0008) to existing admin-equivalent keys only, and takes them back on down', async () => {
    const t = await createTestDatabase();
    const own = await openDatabase(testConfig(t.env).store);
    try {
      const m = new Migrator(own.adminDb, own.kind);
      await m.up(7);
      const org = '018f0000-0000-7000-8000-000000000001';
      await sql`INSERT INTO orgs (id, slug, name) VALUES (${org}, 'upgraded', 'Upgraded')`.execute(own.adminDb);
      for (const [id, scopes] of [
        ['018f0000-0000-7000-8000-0000000000a1', ['memories:read', 'memories:write', 'admin:keys', 'audit:read']],
        ['018f0000-0000-7000-8000-0000000000a2', ['memories:read']],
        ['018f0000-0000-7000-8000-0000000000a3', ['admin:keys', 'ops:read']],
      ] as const) {
        await sql`INSERT INTO api_keys (org_id, id, name, prefix, secret_hash, scopes)
          VALUES (${org}, ${id}, 'k', ${id.slice(-4)}, 'x', ${[...scopes]}::text[])`.execute(own.adminDb);
      }
      const scopes = async () =>
        (
          await sql<{ id: string; scopes: string[] }>`SELECT id, scopes FROM api_keys ORDER BY id`.execute(own.adminDb)
        ).rows.map((r) => [...r.scopes].sort());
      await m.up(8);
      expect(await scopes()).toEqual([
        ['admin:keys', 'audit:read', 'jobs:read', 'jobs:write', 'memories:read', 'memories:write', 'ops:read'],
        ['memories:read'],
        ['admin:keys', 'jobs:read', 'jobs:write', 'ops:read'],
      ]);
      await m.down(1);
      expect(await scopes()).toEqual([
        ['admin:keys', 'audit:read', 'memories:read', 'memories:write'],
        ['memories:read'],
        ['admin:keys'],
      ]);
    } finally {
      await own.close();
      await t.drop();
    }
  });

  it('keeps the knowledge graph through 0018 down and up: vectors back in the entity rows, then out again', async () => {
    const t = await createTestEngram();
    try {
      const org = await t.makeOrg();
      const graph = t.engram.graph;
      await graph.createEntities(org.ctx, [
        { name: 'A', entityType: 't', observations: ['one', 'two'] },
        { name: 'B', entityType: 't', observations: [] },
      ]);
      await graph.flushEmbeddings();
      // B's vector is now older than its text, and B is queued.
      await graph.addObservations(org.ctx, [{ entityName: 'B', contents: ['changed'] }]);
      await graph.close();
      const before = await snapshotAll(t.engram.database.adminDb);
      expect(before.find((s) => s.table === 'graph_embedding_queue')?.rows).toBe(1);

      // 0019 (import quotas), 0020 (memory postings) and 0021 (fair job claims) came after 0018; down past them to reach 0018.
      expect((await t.engram.migrator.down(4)).map((r) => r.name)).toEqual([
        'jobs_fair_claim',
        'memory_postings',
        'import_quota',
        'graph_scale',
      ]);
      const rows = await sql<{ name: string; embedded: boolean; fresh: boolean }>`
        SELECT name, embedding IS NOT NULL AS embedded, embedded_revision = revision AS fresh
        FROM graph_entities WHERE org_id = ${org.orgId} ORDER BY name`.execute(t.engram.database.adminDb);
      expect(rows.rows).toEqual([
        { name: 'A', embedded: true, fresh: true },
        { name: 'B', embedded: true, fresh: false },
      ]);

      await t.engram.migrator.up();
      expect(await snapshotAll(t.engram.database.adminDb)).toEqual(before);
    } finally {
      await t.close();
    }
  });

  it('leaves every table checksum unchanged', async () => {
    const t = await createTestEngram();
    try {
      const org = await t.makeOrg();
      for (let i = 0; i < 5; i++) {
        const { memory } = await t.engram.memories.remember(org.ctx, {
          content: `fact ${i} about the system`,
          tags: [`t${i}`],
          metadata: { i },
        });
        if (i % 2 === 0) await t.engram.memories.update(org.ctx, memory.id, { content: `fact ${i}, revised` });
      }
      const before = await snapshotAll(t.engram.database.adminDb);
      expect(before.find((s) => s.table === 'memories')?.rows).toBe(5);
      expect(before.find((s) => s.table === 'memory_history')?.rows).toBe(3);
      const down = await t.engram.migrator.down(1);
      expect(down).toHaveLength(1);
      const up = await t.engram.migrator.up();
      expect(up).toHaveLength(1);
      const after = await snapshotAll(t.engram.database.adminDb);
      expect(after).toEqual(before);
    } finally {
      await t.close();
    }
  });
});
