import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  realpathSync,
  statSync,
  type Stats,
} from 'node:fs';
import { lstat, open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * Why a repository file was not read: gone (or not readable), a symbolic
 * link or a special file (FIFO, device, directory), a path that leads out of
 * the repository, or larger than the cap.
 */
export type RefusedReason = 'missing' | 'not-a-file' | 'outside' | 'too-large';

/** A repository file's bytes, or why they were not read. */
export type RepoRead = { readonly bytes: Buffer } | { readonly refused: RefusedReason; readonly size?: number };

/** Not defined on Windows: there the final component is lstat'ed before it is opened. */
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
// O_NONBLOCK: opening a FIFO swapped in after a check does not wait for a writer.
const OPEN_FLAGS = constants.O_RDONLY | NOFOLLOW | (constants.O_NONBLOCK ?? 0);

export const within = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

const refusalOf = (e: unknown): RefusedReason => {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  // ELOOP: O_NOFOLLOW met a symbolic link; EISDIR and friends: not a file.
  return code === 'ELOOP' || code === 'EISDIR' || code === 'ENXIO' ? 'not-a-file' : 'missing';
};

const sameFile = (a: Stats, b: Stats): boolean => a.ino === b.ino && a.dev === b.dev;

/** What `read` decides from the opened file's fstat, before reading. */
const checkOpened = (st: Stats, maxBytes: number): RepoRead | undefined => {
  if (!st.isFile()) return { refused: 'not-a-file' };
  if (st.size > maxBytes) return { refused: 'too-large', size: st.size };
  return undefined;
};

/**
 * A repository's files as the indexer may read them: everything in a
 * repository is the tenant's, so a file is read only when it is a regular
 * file (the last component opened with O_NOFOLLOW and checked with fstat, so
 * a link swapped in after a check is refused too), whose real path is inside
 * the repository's real path (a linked parent directory cannot lead out), and
 * no larger than the caller's cap (checked before reading and again while
 * reading, for a file that grows). `/dev/zero`, a FIFO, a 10 GB file or a
 * link to `/etc/passwd` is never opened for reading, let alone read whole.
 *
 * Reads are asynchronous; {@link RepoFiles.readSync} exists for the one
 * caller with a synchronous API (the TypeScript compiler's host), where the
 * size cap bounds how long the event loop waits.
 */
/**
 * The buffer of one capped read, for {@link RepoFiles.read} and its sync
 * twin: sized from fstat, grown (to the cap + 1 at most) for a file that
 * grows while it is read.
 */
class CappedBuffer {
  buf: Buffer;
  n = 0;

  constructor(
    size: number,
    private readonly maxBytes: number,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(size, maxBytes) + 1);
  }

  /** Counts `bytesRead` in; the read's result once it is over (end of file, or past the cap), else undefined. */
  advance(bytesRead: number): RepoRead | undefined {
    if (bytesRead === 0) return { bytes: this.buf.subarray(0, this.n) };
    this.n += bytesRead;
    if (this.n > this.maxBytes) return { refused: 'too-large', size: this.n };
    if (this.n === this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.buf.length * 2, this.maxBytes + 1));
      this.buf.copy(grown, 0, 0, this.n);
      this.buf = grown;
    }
    return undefined;
  }
}

export class RepoFiles {
  private constructor(readonly realRoot: string) {}

  /** The repository at `root`, by its real path. */
  static async open(root: string): Promise<RepoFiles> {
    return new RepoFiles(await realpath(root));
  }

  static openSync(root: string): RepoFiles {
    return new RepoFiles(realpathSync(root));
  }

  /** The absolute path of a repository path (posix, relative) or of an absolute path; undefined outside the root. */
  resolve(p: string): string | undefined {
    const abs = path.isAbsolute(p) ? path.normalize(p) : path.join(this.realRoot, ...p.split('/'));
    return within(abs, this.realRoot) ? abs : undefined;
  }

  /** True when a path's parent directories may be links (it is not directly under the root). */
  private nested(abs: string): boolean {
    return path.dirname(abs) !== this.realRoot;
  }

  async read(p: string, maxBytes: number): Promise<RepoRead> {
    const abs = this.resolve(p);
    if (abs === undefined) return { refused: 'outside' };
    let fh;
    try {
      if (NOFOLLOW === 0 && !(await lstat(abs)).isFile()) return { refused: 'not-a-file' };
      fh = await open(abs, OPEN_FLAGS);
    } catch (e) {
      return { refused: refusalOf(e) };
    }
    try {
      const st = await fh.stat();
      const early = checkOpened(st, maxBytes);
      if (early !== undefined) return early;
      if (this.nested(abs)) {
        // The file opened must be the one at the real path, inside the root: not reached through a linked directory.
        const real = await realpath(abs);
        if (!within(real, this.realRoot) || !sameFile(await stat(real), st)) return { refused: 'outside' };
      }
      const into = new CappedBuffer(st.size, maxBytes);
      for (;;) {
        const { bytesRead } = await fh.read(into.buf, into.n, into.buf.length - into.n, into.n);
        const done = into.advance(bytesRead);
        if (done !== undefined) return done;
      }
    } catch (e) {
      return { refused: refusalOf(e) };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /** {@link read}, synchronously (same checks, same cap). */
  readSync(p: string, maxBytes: number): RepoRead {
    const abs = this.resolve(p);
    if (abs === undefined) return { refused: 'outside' };
    let fd: number;
    try {
      if (NOFOLLOW === 0 && !lstatSync(abs).isFile()) return { refused: 'not-a-file' };
      fd = openSync(abs, OPEN_FLAGS);
    } catch (e) {
      return { refused: refusalOf(e) };
    }
    try {
      const st = fstatSync(fd);
      const early = checkOpened(st, maxBytes);
      if (early !== undefined) return early;
      if (this.nested(abs)) {
        const real = realpathSync(abs);
        if (!within(real, this.realRoot) || !sameFile(statSync(real), st)) return { refused: 'outside' };
      }
      const into = new CappedBuffer(st.size, maxBytes);
      for (;;) {
        const done = into.advance(readSync(fd, into.buf, into.n, into.buf.length - into.n, into.n));
        if (done !== undefined) return done;
      }
    } catch (e) {
      return { refused: refusalOf(e) };
    } finally {
      try {
        closeSync(fd);
      } catch {
        // Already closed or gone: nothing to release.
      }
    }
  }
}
