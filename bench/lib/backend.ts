import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, redactedSummary, type Config } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/main.ts';

/**
 * One Engram server per backend, in this process, on 127.0.0.1 and a free
 * port, over a fresh store: a temp data dir (PGlite) or a fresh database
 * `engram_bench_<random>` (PostgreSQL). `close()` stops the server and removes
 * the store; it is safe to call more than once and after a failed start.
 */

export type BackendName = 'pglite' | 'postgres';
export const BACKENDS: readonly BackendName[] = ['pglite', 'postgres'];

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** The benchmark only ever talks to this machine. */
export function assertLoopback(name: string, url: string): void {
  const host = new URL(url).hostname;
  if (!LOOPBACK.has(host)) throw new Error(`${name} must point at 127.0.0.1 for the benchmark (got host ${host})`);
}

export interface Backend {
  readonly name: BackendName;
  readonly url: string;
  readonly apiKey: string;
  readonly server: RunningServer;
  readonly config: Config;
  /** Name of the temporary database (postgres only). */
  readonly database: string | undefined;
  readonly dataDir: string;
  /** True when the store came from an earlier run (--reuse). */
  readonly reused: boolean;
  /** Facts about the store worth recording (server version, ranker, …). */
  readonly info: Record<string, unknown>;
  close(opts?: { keep?: boolean }): Promise<void>;
}

export interface BackendOptions {
  readonly databaseUrl: string;
  readonly valkeyUrl: string | undefined;
  /** Extra environment for loadConfig (e.g. DATABASE_POOL_MAX, EMBEDDER). */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Reuse a store kept by an earlier `--keep` run instead of a fresh one: its
   * data dir (with admin.key) and, for postgres, its database. Never deleted.
   */
  readonly reuse?: { readonly dataDir: string; readonly database?: string | undefined } | undefined;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: 'engram-bench' });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * startServer prints the first-start admin key banner on stdout; the key is
 * also in <dataDir>/admin.key, which is what we read. The banner is moved to
 * stderr so stdout keeps only the result table.
 */
async function quietStart(config: Config): Promise<RunningServer> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = process.stderr.write.bind(process.stderr);
  try {
    return await startServer(config);
  } finally {
    process.stdout.write = write;
  }
}

export async function startBackend(name: BackendName, opts: BackendOptions): Promise<Backend> {
  const reuse = opts.reuse;
  if (reuse !== undefined) {
    if (!existsSync(path.join(reuse.dataDir, 'admin.key')))
      throw new Error(`${reuse.dataDir} has no admin.key to reuse`);
    if (name === 'postgres' && reuse.database === undefined)
      throw new Error('reusing postgres needs the database name');
    if (reuse.database !== undefined && !/^engram_bench_[0-9a-f]+$/.test(reuse.database)) {
      throw new Error(`only databases created by the benchmark (engram_bench_…) can be reused`);
    }
  }
  const dataDir = reuse?.dataDir ?? mkdtempSync(path.join(tmpdir(), `engram-bench-${name}-`));
  let database: string | undefined = name === 'postgres' ? reuse?.database : undefined;
  let server: RunningServer | undefined;
  let closed = false;

  const close = async (o: { keep?: boolean } = {}) => {
    if (closed) return;
    closed = true;
    if (server !== undefined) await server.stop().catch((e: unknown) => warn(`stopping ${name} failed`, e));
    if (o.keep === true || reuse !== undefined) {
      const how = `--backends ${name} --reuse ${dataDir}${database === undefined ? '' : ` --reuse-database ${database}`}`;
      process.stderr.write(`[bench] kept the ${name} store; measure it again with ${how}\n`);
      return;
    }
    if (database !== undefined) {
      const db = database;
      await withClient(opts.databaseUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)).catch(
        (e: unknown) => warn(`dropping database ${db} failed`, e),
      );
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    const env: Record<string, string> = {
      // Benchmarks measure the server, not the default quotas (`opts.env` may turn limits back on).
      RATE_LIMIT_ENABLED: 'false',
      // Unless `opts.env` says otherwise (bench:load uses an external embedder and fewer logs).
      EMBEDDER: 'builtin',
      LOG_LEVEL: 'warn',
      ...opts.env,
      HOST: '127.0.0.1',
      PORT: '0',
      ENGRAM_DATA_DIR: dataDir,
      REEMBED_INTERVAL_MS: '0',
    };
    const info: Record<string, unknown> = {};
    if (name === 'postgres') {
      assertLoopback('DATABASE_URL', opts.databaseUrl);
      database ??= `engram_bench_${randomBytes(6).toString('hex')}`;
      const db = database;
      await withClient(opts.databaseUrl, async (c) => {
        if (reuse === undefined) await c.query(`CREATE DATABASE ${db}`);
        for (const setting of ['server_version', 'autovacuum', 'shared_buffers', 'max_connections']) {
          const r = await c.query<Record<string, string>>(`SHOW ${setting}`);
          info[setting] = r.rows[0]?.[setting];
        }
      });
      const u = new URL(opts.databaseUrl);
      u.pathname = `/${database}`;
      env.DATABASE_URL = u.toString();
      if (opts.valkeyUrl !== undefined) {
        assertLoopback('VALKEY_URL', opts.valkeyUrl);
        env.VALKEY_URL = opts.valkeyUrl;
      }
    }
    const config = loadConfig(env);
    server = await quietStart(config);
    const apiKey = readFileSync(path.join(dataDir, 'admin.key'), 'utf8').trim();
    if (!new URL(server.url).hostname.startsWith('127.')) throw new Error(`server listens on ${server.url}`);
    info.lexicalRanker = await server.engram.system.lexicalRanker();
    info.cache = config.valkeyUrl === undefined ? 'in-process' : 'valkey';
    return {
      name,
      url: server.url,
      apiKey,
      server,
      config,
      database,
      dataDir,
      reused: reuse !== undefined,
      info,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

export const configSummary = (b: Backend): Record<string, unknown> => redactedSummary(b.config);

function warn(what: string, e: unknown): void {
  process.stderr.write(`[bench] ${what}: ${e instanceof Error ? e.message : String(e)}\n`);
}

/** One authenticated JSON request to a backend's API; throws with the status and body unless 2xx. */
export async function api<T>(b: Backend, method: string, url: string, body?: object): Promise<T> {
  const res = await fetch(new URL(url, b.url), {
    method,
    headers: {
      authorization: `Bearer ${b.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  return (res.status === 204 ? undefined : await res.json()) as T;
}
