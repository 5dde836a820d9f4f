import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { buildApp } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { ALL_SCOPES, type RequestContext, type Scope } from '../../src/domain/tenancy/tenancy.types.ts';
import { appDeps, openEngram, type Engram } from '../../src/main.ts';
import { Health } from '../../src/ops/health.ts';

/**
 * Real stores for tests: embedded PGlite by default; with
 * ENGRAM_TEST_BACKEND=postgres (the `integration` project) a fresh database on
 * DATABASE_URL plus Valkey on VALKEY_URL. Each test file gets its own store and
 * each test builds its own orgs, so nothing is truncated or shared.
 */
export const backend: 'pglite' | 'postgres' = process.env.ENGRAM_TEST_BACKEND === 'postgres' ? 'postgres' : 'pglite';

export interface TestDatabase {
  readonly env: Record<string, string>;
  drop(): Promise<void>;
}

/** A fresh, empty database (PostgreSQL) or data directory (PGlite). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'engram-test-'));
  if (backend === 'pglite') {
    return { env: { ENGRAM_DATA_DIR: dataDir }, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
  const adminUrl = process.env.DATABASE_URL;
  const valkeyUrl = process.env.VALKEY_URL;
  if (adminUrl === undefined || valkeyUrl === undefined) {
    throw new Error('The integration project needs DATABASE_URL and VALKEY_URL (see docs/ci.md)');
  }
  const name = `engram_test_${uuidv7().replaceAll('-', '').slice(-16)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    // A key prefix per store: cached vectors must not leak between test runs.
    env: {
      ENGRAM_DATA_DIR: dataDir,
      DATABASE_URL: url.toString(),
      VALKEY_URL: valkeyUrl,
      VALKEY_KEY_PREFIX: `${name}:`,
    },
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function testConfig(env: Record<string, string>): Config {
  // Suites write, search and present bad credentials in bursts well past the default limits; their tests turn them on.
  return loadConfig({
    REEMBED_INTERVAL_MS: '0',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_ENABLED: 'false',
    AUTH_FAILURES_PER_MIN: '0',
    ...env,
  });
}

export interface TestOrg {
  readonly orgId: string;
  readonly slug: string;
  /** An API key with every scope. */
  readonly key: string;
  readonly ctx: RequestContext;
  readonly auth: { authorization: string };
  /** Creates another key of this org with the given scopes. */
  keyWith(scopes: readonly Scope[]): Promise<string>;
}

export interface TestEngram {
  readonly engram: Engram;
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly health: Health;
  makeOrg(): Promise<TestOrg>;
  close(): Promise<void>;
}

export async function createTestEngram(
  env: Record<string, string> = {},
  opts: { logger?: import('fastify').FastifyBaseLogger } = {},
): Promise<TestEngram> {
  const db = await createTestDatabase();
  const config = testConfig({ ...db.env, ...env });
  const engram = await openEngram(config, { log: pino({ level: 'silent' }) });
  const health = new Health([{ name: 'store', check: () => engram.database.ping() }]);
  const app = await buildApp(appDeps(engram, health, opts.logger as import('pino').Logger | undefined));
  await app.ready();
  let n = 0;
  return {
    engram,
    app,
    config,
    health,
    makeOrg: async () => {
      n += 1;
      const slug = `org-${n}-${uuidv7().slice(-8)}`;
      const org = await engram.system.insertOrg({
        id: uuidv7(),
        slug,
        name: `Test ${slug}`,
        region: config.residency.region,
      });
      const issued = await engram.apiKeys.create(org.id, { name: 'test', scopes: ALL_SCOPES });
      return {
        orgId: org.id,
        slug,
        key: issued.secret,
        auth: { authorization: `Bearer ${issued.secret}` },
        ctx: {
          orgId: org.id,
          actor: { type: 'api_key', id: issued.key.id },
          roles: [],
          scopes: new Set(ALL_SCOPES),
          authMethod: 'api_key',
          requestId: 'test',
        },
        keyWith: async (scopes) => (await engram.apiKeys.create(org.id, { name: 'scoped', scopes })).secret,
      };
    },
    close: async () => {
      await app.close();
      await engram.close();
      await db.drop();
    },
  };
}
