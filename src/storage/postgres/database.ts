import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { StoreConfig } from '../../config/config.ts';
import { PgliteWorker, PgliteWorkerDialect } from './pglite-dialect.ts';
import type { DB } from './schema.ts';

/**
 * An open store: the same Kysely API over embedded PGlite or a PostgreSQL pool.
 * `db` is the app's handle (tenant work goes through `withTenant`, which drops
 * to the `engram_app` role); `adminDb` runs migrations and system work.
 * In embedded mode both are the same single PGlite session.
 */
export interface Database {
  readonly kind: 'pglite' | 'postgres';
  readonly db: Kysely<DB>;
  readonly adminDb: Kysely<DB>;
  /** Cheap liveness probe of the store. */
  ping(): Promise<void>;
  /** Connections of the application pool, for metrics (PGlite: its one session). */
  poolStats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

// node-postgres returns int8/numeric as strings; our counts are cast to int in SQL.
// Dates stay Date objects; pgvector values come back as text like "[1,2,3]".

export async function openDatabase(config: StoreConfig): Promise<Database> {
  if (config.kind === 'pglite') {
    const worker = new PgliteWorker(config.dataDir);
    await worker.ready;
    const db = new Kysely<DB>({ dialect: new PgliteWorkerDialect(worker) });
    return {
      kind: 'pglite',
      db,
      adminDb: db,
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
      close: () => db.destroy(),
    };
  }
  const makePool = (url: string, max: number) => {
    const pool = new pg.Pool({
      connectionString: url,
      max,
      idleTimeoutMillis: config.idleTimeoutMs,
      connectionTimeoutMillis: config.connectTimeoutMs,
      statement_timeout: config.statementTimeoutMs === 0 ? undefined : config.statementTimeoutMs,
      application_name: 'engram',
    });
    // An idle client losing its connection must not crash the process.
    pool.on('error', () => undefined);
    return pool;
  };
  const pool = makePool(config.url, config.poolMax);
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  const adminDb =
    config.adminUrl === config.url
      ? db
      : new Kysely<DB>({ dialect: new PostgresDialect({ pool: makePool(config.adminUrl, 2) }) });
  return {
    kind: 'postgres',
    db,
    adminDb,
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    close: async () => {
      await db.destroy();
      if (adminDb !== db) await adminDb.destroy();
    },
  };
}
