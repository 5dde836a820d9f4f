import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AppError } from '../../errors.ts';

/**
 * The embedded store is one process's: two PGlite instances on one directory
 * would corrupt it. Whoever opens the store holds `<data dir>/engram.lock`
 * (pid + server URL). Others read it to find the running server instead.
 */
export interface LockInfo {
  readonly pid: number;
  readonly url: string | null;
  readonly startedAt: string;
}

const lockPath = (dataDir: string) => path.join(dataDir, 'engram.lock');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live holder of the lock, if any (stale locks of dead processes are ignored). */
export function readLock(dataDir: string): LockInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(lockPath(dataDir), 'utf8')) as LockInfo;
    return typeof info.pid === 'number' && isAlive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export class DataDirLock {
  private constructor(
    private readonly file: string,
    private info: LockInfo,
  ) {}

  static acquire(dataDir: string, url: string | null = null): DataDirLock {
    const file = lockPath(dataDir);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600);
        const info: LockInfo = { pid: process.pid, url, startedAt: new Date().toISOString() };
        writeSync(fd, JSON.stringify(info));
        closeSync(fd);
        return new DataDirLock(file, info);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const holder = readLock(dataDir);
        if (holder !== undefined && holder.pid !== process.pid) {
          throw new AppError(
            'STORE_LOCKED',
            `The embedded store in ${dataDir} is in use by process ${holder.pid}` +
              (holder.url === null ? '' : ` (server at ${holder.url})`) +
              '. Stop that process first, or use commands that talk to the running server.',
            { details: holder },
          );
        }
        // Stale lock from a dead process: take it over.
        rmSync(file, { force: true });
      }
    }
    throw new AppError('STORE_LOCKED', `Could not lock ${file}`);
  }

  /** Records where the server listens, so CLI commands can reach it. */
  setUrl(url: string): void {
    this.info = { ...this.info, url };
    const fd = openSync(this.file, 'w', 0o600);
    writeSync(fd, JSON.stringify(this.info));
    closeSync(fd);
  }

  release(): void {
    try {
      const info = JSON.parse(readFileSync(this.file, 'utf8')) as LockInfo;
      if (info.pid === process.pid) rmSync(this.file, { force: true });
    } catch {
      // already gone
    }
  }
}
