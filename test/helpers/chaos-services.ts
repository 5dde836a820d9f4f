import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * Real, private services for the chaos test: a PostgreSQL cluster of its own
 * (initdb into a temp dir), a Valkey server and the fake embedder as a child
 * process — each on a free port, so stopping them never disturbs the shared
 * services other suites use.
 */

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const PG_BIN = '/usr/lib/postgresql/15/bin';
const isRoot = process.getuid?.() === 0;

const executable = (file: string): boolean => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const onPath = (name: string): string | undefined =>
  (process.env.PATH ?? '')
    .split(path.delimiter)
    .map((dir) => path.join(dir, name))
    .find(executable);

/** valkey-server, else redis-server. */
export const valkeyServer = (): string | undefined => onPath('valkey-server') ?? onPath('redis-server');

/** What is missing to run the chaos test here (empty: everything is there). */
export function missingForChaos(): string[] {
  const missing: string[] = [];
  for (const b of ['initdb', 'pg_ctl', 'postgres']) {
    if (!executable(path.join(PG_BIN, b))) missing.push(path.join(PG_BIN, b));
  }
  if (valkeyServer() === undefined) missing.push('valkey-server (or redis-server)');
  if (isRoot && onPath('runuser') === undefined) missing.push('runuser (PostgreSQL refuses to run as root)');
  return missing;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once something on `port` answers a RESP PING with PONG (Valkey is serving). */
async function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`);
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

/** A PostgreSQL cluster in a temp dir, as the `postgres` OS user when we are root; trust auth. */
export class PrivatePostgres {
  private constructor(
    private readonly root: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private get data(): string {
    return path.join(this.root, 'data');
  }

  private static async as(args: string[]): Promise<void> {
    const [cmd, ...rest] = isRoot ? ['runuser', '-u', 'postgres', '--', ...args] : args;
    await run(cmd ?? '', rest, { cwd: tmpdir() });
  }

  static async create(): Promise<PrivatePostgres> {
    const root = mkdtempSync(path.join(tmpdir(), 'engram-chaos-pg-'));
    if (isRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(root, uid, gid);
    }
    const pg = new PrivatePostgres(root, await freePort());
    await PrivatePostgres.as([
      path.join(PG_BIN, 'initdb'),
      '-D',
      pg.data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    await pg.start();
    return pg;
  }

  /** Starts the cluster and waits until it accepts connections. */
  async start(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-k ${this.root}`,
      '-c listen_addresses=127.0.0.1',
      // Throwaway data: no fsync. A killed server loses nothing the OS already has.
      '-c fsync=off',
      '-c full_page_writes=off',
    ].join(' ');
    await PrivatePostgres.as([
      path.join(PG_BIN, 'pg_ctl'),
      '-D',
      this.data,
      '-l',
      path.join(this.root, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      options,
      'start',
    ]);
  }

  /** `pg_ctl stop -m immediate`: every backend dies at once, like a crash. */
  async stop(): Promise<void> {
    await PrivatePostgres.as([path.join(PG_BIN, 'pg_ctl'), '-D', this.data, '-m', 'immediate', '-w', 'stop']);
  }

  async destroy(): Promise<void> {
    await this.stop().catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** valkey-server (or redis-server) without persistence on a port of its own. */
export class PrivateValkey {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async create(): Promise<PrivateValkey> {
    const v = new PrivateValkey(await freePort(), mkdtempSync(path.join(tmpdir(), 'engram-chaos-valkey-')));
    await v.start();
    return v;
  }

  async start(): Promise<void> {
    const bin = valkeyServer();
    if (bin === undefined) throw new Error('no valkey-server or redis-server on PATH');
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    this.child = spawn(bin, [...args, '--dir', this.dir], { stdio: 'ignore' });
    await until(`Valkey on port ${this.port} answering PING`, () => pong(this.port));
  }

  /** SIGKILL: no goodbye to connected clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGKILL');
    await exited(child);
    this.child = undefined;
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** test/helpers/fake-openai-server.ts in a child process on a fixed port. */
export class EmbedderProcess {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly dimension: number,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  static async create(dimension: number): Promise<EmbedderProcess> {
    const e = new EmbedderProcess(await freePort(), dimension);
    await e.start();
    return e;
  }

  async start(): Promise<void> {
    const script = path.join(REPO, 'test/helpers/fake-openai-server.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', script, String(this.port), String(this.dimension)], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fake embedder did not start:\n${out}`)), 30_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (!out.includes('ready ')) return;
        clearTimeout(timer);
        resolve();
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`fake embedder exited (${String(code)}):\n${out}`));
      });
    });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGKILL');
    await exited(child);
    this.child = undefined;
  }

  destroy(): Promise<void> {
    return this.kill();
  }
}
