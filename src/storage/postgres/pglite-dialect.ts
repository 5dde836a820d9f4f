import { Worker } from 'node:worker_threads';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from 'kysely';

/** The error shape the worker sends back; mirrors the fields of a Postgres error. */
export class PgliteError extends Error {
  override readonly name = 'PgliteError';
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly detail: string | undefined,
    readonly constraint: string | undefined,
  ) {
    super(message);
  }
}

interface WorkerReply {
  id: number;
  ok: boolean;
  rows?: unknown[];
  affectedRows?: number;
  error?: { message: string; code?: string; detail?: string; constraint?: string };
}

/**
 * A PGlite instance living in a worker thread. Requests are serialised through
 * `run`, because PGlite is a single session: a transaction holds the session
 * (see {@link PgliteWorkerDriver.acquireConnection}) until it ends.
 */
export class PgliteWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void }>();
  private nextId = 1;
  private closed = false;
  readonly ready: Promise<void>;

  constructor(dataDir: string | undefined) {
    this.worker = new Worker(new URL('./pglite.worker.js', import.meta.url), {
      workerData: { dataDir },
    });
    this.ready = new Promise((resolve, reject) => {
      this.pending.set(0, {
        resolve: (r) =>
          r.ok ? resolve() : reject(new Error(`PGlite failed to start: ${r.error?.message ?? 'unknown'}`)),
      });
      this.worker.once('error', (e) => reject(e));
    });
    this.worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      if (p === undefined) return;
      this.pending.delete(r.id);
      p.resolve(r);
    });
    this.worker.on('exit', () => {
      this.closed = true;
      for (const [, p] of this.pending) {
        p.resolve({ id: -1, ok: false, error: { message: 'PGlite worker exited', code: '57P01' } });
      }
      this.pending.clear();
    });
  }

  private send(
    msg: { op: 'query'; sql: string; params: readonly unknown[] } | { op: 'exec'; sql: string } | { op: 'close' },
  ): Promise<WorkerReply> {
    if (this.closed) {
      return Promise.resolve({ id: -1, ok: false, error: { message: 'PGlite is closed', code: '57P01' } });
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve });
      this.worker.postMessage({ id, ...msg });
    });
  }

  async query<R>(sqlText: string, params: readonly unknown[]): Promise<QueryResult<R>> {
    // Without parameters use the simple protocol, which (like node-postgres)
    // accepts several statements at once: migrations rely on it.
    const r = await this.send(
      params.length === 0 ? { op: 'exec', sql: sqlText } : { op: 'query', sql: sqlText, params },
    );
    if (!r.ok) throw toError(r);
    return { rows: (r.rows ?? []) as R[], numAffectedRows: BigInt(r.affectedRows ?? 0) };
  }

  async exec(sqlText: string): Promise<void> {
    const r = await this.send({ op: 'exec', sql: sqlText });
    if (!r.ok) throw toError(r);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.send({ op: 'close' });
    await this.worker.terminate();
    this.closed = true;
  }
}

function toError(r: WorkerReply): PgliteError {
  return new PgliteError(r.error?.message ?? 'PGlite error', r.error?.code, r.error?.detail, r.error?.constraint);
}

/** A tiny FIFO mutex: PGlite is one session, so one connection at a time. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    return prev.then(() => release);
  }
}

class PgliteConnection implements DatabaseConnection {
  constructor(private readonly pg: PgliteWorker) {}
  executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    return this.pg.query<R>(q.sql, q.parameters);
  }
  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on the embedded store');
  }
}

export class PgliteWorkerDriver implements Driver {
  private readonly mutex = new Mutex();
  private readonly releases = new WeakMap<DatabaseConnection, () => void>();
  private readonly connection: PgliteConnection;
  constructor(private readonly pg: PgliteWorker) {
    this.connection = new PgliteConnection(pg);
  }
  async init(): Promise<void> {
    await this.pg.ready;
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.mutex.lock();
    // One connection object: the WeakMap keyed by it holds the current holder's release.
    this.releases.set(this.connection, release);
    return this.connection;
  }
  async beginTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('BEGIN'));
  }
  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('COMMIT'));
  }
  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }
  async releaseConnection(conn: DatabaseConnection): Promise<void> {
    const release = this.releases.get(conn);
    this.releases.delete(conn);
    release?.();
  }
  async destroy(): Promise<void> {
    await this.pg.close();
  }
}

export class PgliteWorkerDialect implements Dialect {
  constructor(private readonly pg: PgliteWorker) {}
  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PgliteWorkerDriver(this.pg);
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }
}
