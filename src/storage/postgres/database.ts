import {
  Kysely,
  PostgresDialect,
  sql,
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import pg from 'pg';
import type { BreakerConfig, StoreConfig } from '../../config/config.ts';
import { AppError } from '../../errors.ts';
import { DependencyPolicy, isBrokenCircuit } from '../../ops/resilience.ts';
import { isConnectionFailure, isPoolTimeout } from './pg-errors.ts';
import { PgliteWorker, PgliteWorkerDialect } from './pglite-dialect.ts';
import type { DB } from './schema.ts';

/**
 * An open store: the same Kysely API over embedded PGlite or a PostgreSQL pool.
 * On PostgreSQL there are three pools, each with its own session role:
 * - `db`, the app's handle: its sessions start as `engram_app` (a startup
 *   option, so even RESET ROLE or DISCARD ALL stay there). Tenant work goes
 *   through `withTenant`, which names the org per transaction; any other query
 *   on it runs under RLS with no org and sees nothing.
 * - `systemDb`, for system work across orgs (org and quota lookups, audit
 *   chains, the job queue, the code registry): sessions start as
 *   `engram_system`. DATABASE_SYSTEM_URL, else DATABASE_URL.
 * - `adminDb`, the login itself (the owner with DATABASE_ADMIN_URL): migrations
 *   and maintenance that need ownership (ANALYZE, VACUUM, index creation).
 * In embedded mode all three are the same single PGlite session, which runs
 * as its superuser: RLS does not confine it, and `withTenant` switches role
 * per transaction as on PostgreSQL.
 */
export interface Database {
  readonly kind: 'pglite' | 'postgres';
  readonly db: Kysely<DB>;
  readonly systemDb: Kysely<DB>;
  readonly adminDb: Kysely<DB>;
  /** Cheap liveness probe of the store. */
  ping(): Promise<void>;
  /**
   * Checks that the app and system pools run as `engram_app` and
   * `engram_system` (a pooler that drops startup options would leave them as
   * the login); throws CONFIG_INVALID if not. Needs the roles, so call it after migrations.
   */
  checkSessionRoles(): Promise<void>;
  /** The store's circuit breaker (PostgreSQL with a policy); undefined for the embedded store. */
  readonly breaker: DependencyPolicy | undefined;
  /** Connections of the application pool, for metrics (PGlite: its one session). */
  poolStats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

/** The session roles of the app and system pools (migration 0001 creates them). */
export const APP_ROLE = 'engram_app';
export const SYSTEM_ROLE = 'engram_system';

/**
 * `url` with `-c role=<role>` added to its startup `options` (after any the
 * URL already has: node-postgres lets the URL's options override the config's).
 */
export function withSessionRole(url: string, role: string): string {
  const u = new URL(url);
  const options = [u.searchParams.get('options'), `-c role=${role}`].filter((o) => o !== null && o !== '');
  u.searchParams.set('options', options.join(' '));
  return u.toString();
}

// node-postgres returns int8/numeric as strings; our counts are cast to int in SQL.
// Dates stay Date objects; pgvector values come back as text like "[1,2,3]".

export interface OpenDatabaseOptions {
  /**
   * The store's resilience policy: every connection checkout goes through its
   * circuit breaker, so while PostgreSQL is down requests fail fast with
   * UNAVAILABLE instead of each waiting out the connect timeout.
   */
  readonly policy?: DependencyPolicy | undefined;
  /** Told when a pooled connection is lost (a PostgreSQL restart); the process keeps running. */
  readonly onConnectionError?: ((e: Error) => void) | undefined;
  /**
   * false: the app and system pools connect as the login, without a session
   * role. Only for the startup probe, which may run before the first
   * migration has created the roles (a connection naming a missing role fails).
   */
  readonly sessionRoles?: boolean | undefined;
}

export async function openDatabase(config: StoreConfig, opts: OpenDatabaseOptions = {}): Promise<Database> {
  if (config.kind === 'pglite') {
    const worker = new PgliteWorker(config.dataDir);
    await worker.ready;
    const db = new Kysely<DB>({ dialect: new PgliteWorkerDialect(worker) });
    return {
      kind: 'pglite',
      db,
      systemDb: db,
      adminDb: db,
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      checkSessionRoles: () => Promise.resolve(),
      poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
      breaker: undefined,
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
    const onError = (e: Error) => opts.onConnectionError?.(e);
    // A client losing its connection emits 'error'. The pool listens while a
    // client is idle; a checked-out client (mid-transaction when PostgreSQL
    // restarts) has no listener, and an unhandled 'error' would crash the
    // process. Its pending query still fails and the pool drops it on release.
    pool.on('error', onError);
    pool.on('connect', (client) => client.on('error', onError));
    return pool;
  };
  const dialect = (pool: pg.Pool) => new GuardedPostgresDialect({ pool }, opts.policy);
  const as = (url: string, role: string) => (opts.sessionRoles === false ? url : withSessionRole(url, role));
  const pool = makePool(as(config.url, APP_ROLE), config.poolMax);
  const db = new Kysely<DB>({ dialect: dialect(pool) });
  const systemDb = new Kysely<DB>({
    dialect: dialect(makePool(as(config.systemUrl, SYSTEM_ROLE), config.systemPoolMax)),
  });
  const adminDb = new Kysely<DB>({ dialect: dialect(makePool(config.adminUrl, 2)) });
  const currentUser = async (handle: Kysely<DB>) =>
    (await sql<{ u: string }>`SELECT current_user AS u`.execute(handle)).rows[0]?.u;
  return {
    kind: 'postgres',
    db,
    systemDb,
    adminDb,
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    checkSessionRoles: async () => {
      for (const [name, handle, role] of [
        ['DATABASE_URL', db, APP_ROLE],
        ['DATABASE_SYSTEM_URL (else DATABASE_URL)', systemDb, SYSTEM_ROLE],
      ] as const) {
        const user = await currentUser(handle);
        if (user !== role) {
          throw new AppError(
            'CONFIG_INVALID',
            `${name}: its sessions run as ${user ?? 'unknown'}, not ${role}; the startup option "-c role=${role}" was dropped (a connection pooler?)`,
          );
        }
      }
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    breaker: opts.policy,
    close: async () => {
      await Promise.all([db.destroy(), systemDb.destroy(), adminDb.destroy()]);
    },
  };
}

/**
 * Connection-level failures become UNAVAILABLE (503 with `Retry-After`) at the
 * storage boundary, wherever the query came from; everything else is left to
 * `translateDbError`.
 */
function translateConnectionError(e: unknown, policy: DependencyPolicy | undefined): unknown {
  if (e instanceof AppError) return e;
  if (!isBrokenCircuit(e) && !isConnectionFailure(e) && !isPoolTimeout(e)) return e;
  return new AppError('UNAVAILABLE', 'The database is unavailable', {
    cause: e,
    details: { dependency: 'store', retryAfterSeconds: policy?.retryAfterSeconds() ?? 1 },
  });
}

/** PostgresDialect whose driver checks connections out through the store's policy. */
class GuardedPostgresDialect extends PostgresDialect {
  constructor(
    config: ConstructorParameters<typeof PostgresDialect>[0],
    private readonly policy: DependencyPolicy | undefined,
  ) {
    super(config);
  }

  override createDriver(): Driver {
    return new GuardedDriver(super.createDriver(), this.policy);
  }
}

/**
 * The seam for the store's circuit breaker: `acquireConnection`. A checkout
 * sends nothing to the server, so it is idempotent and may be retried; a
 * statement never is (tenant work runs in transactions, and replaying one is
 * the client's call: it gets 503 + Retry-After). Statements are not gated by
 * the breaker either: cutting off a transaction midway — its ROLLBACK
 * included — could hand a pooled connection back with the transaction open.
 * A dead server shows up at the next checkout anyway (ECONNREFUSED).
 */
class GuardedDriver implements Driver {
  constructor(
    private readonly inner: Driver,
    private readonly policy: DependencyPolicy | undefined,
  ) {}

  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw translateConnectionError(e, this.policy);
    }
  }

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const acquire = () => this.inner.acquireConnection();
    const conn = await this.guarded(() =>
      this.policy === undefined ? acquire() : this.policy.execute(acquire, { idempotent: true }),
    );
    return new GuardedConnection(conn, this.policy);
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.guarded(() => this.inner.beginTransaction(unwrap(connection), settings));
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.guarded(() => this.inner.commitTransaction(unwrap(connection)));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.guarded(() => this.inner.rollbackTransaction(unwrap(connection)));
  }

  async savepoint(...args: Parameters<NonNullable<Driver['savepoint']>>): Promise<void> {
    const [connection, name, compile] = args;
    await this.guarded(async () => this.inner.savepoint?.(unwrap(connection), name, compile));
  }

  async rollbackToSavepoint(...args: Parameters<NonNullable<Driver['rollbackToSavepoint']>>): Promise<void> {
    const [connection, name, compile] = args;
    await this.guarded(async () => this.inner.rollbackToSavepoint?.(unwrap(connection), name, compile));
  }

  async releaseSavepoint(...args: Parameters<NonNullable<Driver['releaseSavepoint']>>): Promise<void> {
    const [connection, name, compile] = args;
    await this.guarded(async () => this.inner.releaseSavepoint?.(unwrap(connection), name, compile));
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection(unwrap(connection));
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

const unwrap = (c: DatabaseConnection): DatabaseConnection => (c instanceof GuardedConnection ? c.inner : c);

class GuardedConnection implements DatabaseConnection {
  constructor(
    readonly inner: DatabaseConnection,
    private readonly policy: DependencyPolicy | undefined,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    try {
      return await this.inner.executeQuery<R>(query);
    } catch (e) {
      throw translateConnectionError(e, this.policy);
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

/**
 * The store's resilience policy: only connection-level failures count toward
 * the breaker, and only fast ones (refused, reset, "starting up") are retried —
 * retrying a connect timeout would double the wait. The store's deadlines are
 * the driver's own: DATABASE_CONNECT_TIMEOUT_MS for a checkout (which, unlike
 * a timer around it, also cancels the attempt) and DATABASE_STATEMENT_TIMEOUT_MS
 * for a statement, enforced by the server.
 */
export function storePolicy(opts: BreakerConfig): DependencyPolicy {
  return new DependencyPolicy({
    name: 'store',
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
    breakerThreshold: opts.breakerThreshold,
    halfOpenAfterMs: opts.halfOpenAfterMs,
    isFailure: isConnectionFailure,
    isRetryable: (e) => isConnectionFailure(e) && !(e instanceof Error && /timeout/i.test(e.message)),
    backoff: { initialDelayMs: 50, maxDelayMs: 500 },
  });
}
