import Fastify from 'fastify';
import { sql } from 'kysely';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardRouteScopes } from '../../src/app.ts';
import { startServer, type RunningServer } from '../../src/main.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  testConfig,
  type TestDatabase,
  type TestEngram,
} from '../helpers/test-engram.ts';

describe(`route inventory (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t.close());

  it('has every route either public or scoped, and every non-public route answers 401 without credentials', async () => {
    const routes = t.app.routeInventory.filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS');
    const guarded = routes.filter((r) => !r.public);
    expect(guarded.length).toBeGreaterThanOrEqual(10);
    for (const r of guarded) {
      expect(r.scope, `${r.method} ${r.url}`).toMatch(/^([a-z]+:[a-z]+|authenticated)$/);
      const url = r.url.replace(':id', '01a2013f-67d9-747f-96d4-e8d35187ad10');
      const res = await t.app.inject({
        method: r.method as 'GET',
        url,
        payload: r.method === 'GET' || r.method === 'DELETE' ? undefined : {},
      });
      expect(res.statusCode, `${r.method} ${r.url}`).toBe(401);
      expect(res.json().error.code).toBe('UNAUTHENTICATED');
    }
    const publicUrls = routes.filter((r) => r.public).map((r) => r.url);
    expect(publicUrls).toEqual(expect.arrayContaining(['/health/live', '/health/ready', '/openapi.json']));
    expect(
      publicUrls.every(
        (u) =>
          u.startsWith('/health/') ||
          u.startsWith('/docs') ||
          u === '/openapi.json' ||
          u.startsWith('/.well-known/oauth-protected-resource'),
      ),
    ).toBe(true);
  });

  it('refuses to register a route that declares no scope', async () => {
    const app = Fastify();
    guardRouteScopes(app);
    expect(() => app.get('/v1/rogue', async () => 'open to all')).toThrow(/GET \/v1\/rogue declares no scope/);
    expect(() => app.get('/v1/fine', { config: { scope: 'memories:read' } }, async () => 'ok')).not.toThrow();
    await app.close();
  });
});

describe(`server (${backend})`, () => {
  let db: TestDatabase;
  let server: RunningServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer(testConfig({ ...db.env, PORT: '0' }), pino({ level: 'silent' }));
  });
  afterAll(async () => {
    await server.stop();
    await db.drop();
  });

  it('bootstraps org default with an admin key saved to the data dir', async () => {
    const { readFileSync, statSync } = await import('node:fs');
    const keyFile = `${server.engram.config.dataDir}/admin.key`;
    const key = readFileSync(keyFile, 'utf8').trim();
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const me = await fetch(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${key}` } });
    expect(me.status).toBe(200);
    const body = (await me.json()) as { orgId: string; scopes: string[] };
    expect(body.scopes).toEqual(
      expect.arrayContaining(['memories:read', 'memories:write', 'admin:keys', 'audit:read']),
    );
    expect((await server.engram.system.findOrgBySlug('default'))?.id).toBe(body.orgId);
  });

  it('answers /health/live and /health/ready while a long query runs', async () => {
    let longDone = false;
    const long = sql`SELECT pg_sleep(3)`.execute(server.engram.database.db).then(() => {
      longDone = true;
    });
    await new Promise((r) => setTimeout(r, 200)); // let the query reach the store
    const live = await fetch(`${server.url}/health/live`);
    const liveAnsweredDuringQuery = !longDone;
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: 'live' });
    expect(liveAnsweredDuringQuery).toBe(true);
    const ready = await fetch(`${server.url}/health/ready`);
    const readyAnsweredDuringQuery = !longDone;
    expect([200, 503]).toContain(ready.status);
    expect(readyAnsweredDuringQuery).toBe(true);
    await long;
    const after = await fetch(`${server.url}/health/ready`);
    expect(after.status).toBe(200);
    expect(((await after.json()) as { status: string }).status).toBe('ready');
  });

  it('refreshes planner statistics only when enough rows changed', async () => {
    const { system } = server.engram;
    await system.analyze(true);
    expect(await system.analyze()).toBe(false);
    const org = (await system.findOrgBySlug('default'))!;
    const ctx = {
      orgId: org.id,
      actor: { type: 'system' as const, id: 't' },
      roles: [],
      scopes: new Set<never>(),
      authMethod: 'system' as const,
      requestId: 't',
    };
    for (let i = 0; i < 60; i++) await server.engram.memories.remember(ctx, { content: `statistics test ${i}` });
    expect(await system.analyze()).toBe(true);
    expect(await system.analyze()).toBe(false);
  });

  it('flips readiness when shutting down', async () => {
    const db2 = await createTestDatabase();
    const s2 = await startServer(testConfig({ ...db2.env, PORT: '0' }), pino({ level: 'silent' }));
    expect((await fetch(`${s2.url}/health/ready`)).status).toBe(200);
    await s2.stop();
    await expect(fetch(`${s2.url}/health/live`)).rejects.toThrow();
    await db2.drop();
  });
});
