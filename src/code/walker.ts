import { lstatSync, readdirSync, type Dirent, type Stats } from 'node:fs';
import path from 'node:path';
import { setImmediate } from 'node:timers/promises';
import ignore, { type Ignore } from 'ignore';
import { errors } from '../errors.ts';
import type { WalkResult, WalkedFile } from '../ports/repo-workspace.ts';
import { RepoFiles } from './safe-fs.ts';

/** Directories never walked: version control, dependencies, vendored code, caches and virtualenvs. */
const SKIPPED_DIRS = new Set([
  '.git',
  '.hg',
  '.svn',
  'node_modules',
  'bower_components',
  'vendor',
  'third_party',
  '__pycache__',
  '.venv',
  'venv',
  '.tox',
  '.mypy_cache',
  '.pytest_cache',
  '.next',
  '.turbo',
]);

/** Extensions of files that are not source text. */
const BINARY_EXTENSIONS = new Set(
  (
    'png jpg jpeg gif bmp ico webp tiff psd svgz pdf zip gz tgz bz2 xz 7z rar tar jar war ear class dll so dylib ' +
    'exe bin o a lib obj wasm pyc pyo woff woff2 ttf otf eot mp3 mp4 m4a wav ogg flac avi mov mkv webm sqlite db ' +
    'node pack idx lockb'
  ).split(' '),
);

export interface WalkOptions {
  readonly maxFileBytes: number;
  readonly maxFiles: number;
}

interface IgnoreScope {
  /** Posix path of the directory holding the .gitignore, relative to the root ('' at the root). */
  readonly dir: string;
  readonly ig: Ignore;
}

const isMinified = (name: string): boolean => /\.min\.(js|css|mjs)$/.test(name);

/** Files the module resolver (oxc-resolver, native, synchronous) reads by itself, following links. */
const isResolverInput = (name: string): boolean =>
  name === 'package.json' || name === 'jsconfig.json' || /^tsconfig(\..*)?\.json$/.test(name);

/** Entries stat'ed between two turns of the event loop. */
const YIELD_EVERY = 2_000;

const orUndefined = <T>(f: () => T): T | undefined => {
  try {
    return f();
  } catch {
    return undefined;
  }
};

/**
 * Walks a repository like git would list it: nested `.gitignore` files apply
 * to their directory and below; symbolic links are not followed (a link could
 * lead out of the repository), not even a linked `.gitignore` (git ≥ 2.32
 * does not follow those either); skipped directories, binary extensions,
 * minified bundles and files over `maxFileBytes` are left out, and the walk
 * stops after `maxFiles` files. A `.gitignore` over `maxFileBytes` fails the
 * walk (not retried): skipping it would index what it ignores.
 *
 * The result's `read` reads a walked file again through {@link RepoFiles}:
 * still a regular file, inside the repository's real path, within the cap.
 *
 * The file system is read with synchronous calls, a directory at a time,
 * yielding to the event loop every few thousand entries: for small files a
 * synchronous lstat costs a few microseconds where a promise through libuv's
 * thread pool costs tens (2,300 files: 0.3 s walked with promises).
 */
export async function walkRepository(root: string, opts: WalkOptions): Promise<WalkResult> {
  const repo = await RepoFiles.open(root);
  const realRoot = repo.realRoot;
  const files: WalkedFile[] = [];
  let skippedTooLarge = 0;
  let skippedBinary = 0;
  let skippedLinks = 0;
  let truncated = false;
  const unsafeResolverInputs: string[] = [];
  /** A resolver input must be a regular file within the cap (lstat: a link is not followed). */
  const checkResolverInput = (rel: string, absPath: string): void => {
    const st = orUndefined(() => lstatSync(absPath));
    if (st !== undefined && (!st.isFile() || st.size > opts.maxFileBytes)) unsafeResolverInputs.push(rel);
  };
  /** The package.json of each package in a node_modules directory (and @scope/…), which the walk skips. */
  const checkNodeModules = (rel: string, absDir: string): void => {
    const list = (d: string) => orUndefined(() => readdirSync(d, { withFileTypes: true })) ?? [];
    for (const e of list(absDir)) {
      const pkgs = e.name.startsWith('@') && e.isDirectory() ? list(path.join(absDir, e.name)) : [e];
      for (const p of pkgs) {
        const name = pkgs[0] === e ? e.name : `${e.name}/${p.name}`;
        checkResolverInput(`${rel}/${name}/package.json`, path.join(absDir, ...name.split('/'), 'package.json'));
      }
    }
  };

  const readIgnore = async (dirRel: string): Promise<string | undefined> => {
    const rel = dirRel === '' ? '.gitignore' : `${dirRel}/.gitignore`;
    const r = await repo.read(rel, opts.maxFileBytes);
    if ('bytes' in r) return r.bytes.toString('utf8');
    if (r.refused === 'too-large') {
      throw errors.limitExceeded(
        `${rel} is larger than CODE_MAX_FILE_BYTES (${opts.maxFileBytes} bytes): the walk cannot honour it`,
        { path: rel, size: r.size, maxBytes: opts.maxFileBytes },
      );
    }
    // A link, FIFO or device is counted below with the other entries the walk leaves out.
    return undefined;
  };

  const ignored = (scopes: readonly IgnoreScope[], rel: string, isDir: boolean): boolean => {
    for (const s of scopes) {
      const sub = s.dir === '' ? rel : rel.slice(s.dir.length + 1);
      if (s.ig.ignores(isDir ? `${sub}/` : sub)) return true;
    }
    return false;
  };

  let sinceYield = 0;
  const visit = async (dirRel: string, scopes: readonly IgnoreScope[]): Promise<void> => {
    const abs = dirRel === '' ? realRoot : path.join(realRoot, ...dirRel.split('/'));
    let here = scopes;
    const gitignore = await readIgnore(dirRel);
    if (gitignore !== undefined) here = [...scopes, { dir: dirRel, ig: ignore().add(gitignore) }];
    const entries: Dirent[] = orUndefined(() => readdirSync(abs, { withFileTypes: true })) ?? [];
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    sinceYield += entries.length;
    if (sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await setImmediate();
    }
    for (const entry of entries) {
      if (truncated) return;
      const rel = dirRel === '' ? entry.name : `${dirRel}/${entry.name}`;
      if (isResolverInput(entry.name)) checkResolverInput(rel, path.join(abs, entry.name));
      if (entry.isSymbolicLink()) {
        // A linked node_modules could lead the resolver anywhere.
        if (entry.name === 'node_modules') unsafeResolverInputs.push(rel);
        skippedLinks += 1;
        continue;
      }
      if (entry.isDirectory()) {
        if (entry.name === 'node_modules') checkNodeModules(rel, path.join(abs, entry.name));
        if (SKIPPED_DIRS.has(entry.name) || ignored(here, rel, true)) continue;
        await visit(rel, here);
        continue;
      }
      if (!entry.isFile()) {
        skippedLinks += 1;
        continue;
      }
      if (ignored(here, rel, false)) continue;
      const ext = path.extname(entry.name).slice(1).toLowerCase();
      if (BINARY_EXTENSIONS.has(ext) || isMinified(entry.name)) {
        skippedBinary += 1;
        continue;
      }
      const absPath = path.join(abs, entry.name);
      const st: Stats | undefined = orUndefined(() => lstatSync(absPath));
      if (st === undefined || !st.isFile()) continue;
      if (st.size > opts.maxFileBytes) {
        skippedTooLarge += 1;
        continue;
      }
      if (files.length >= opts.maxFiles) {
        truncated = true;
        return;
      }
      files.push({ path: rel, absPath, size: st.size, mtimeMs: Math.trunc(st.mtimeMs) });
    }
  };

  await visit('', []);
  return {
    files,
    skippedTooLarge,
    skippedBinary,
    skippedLinks,
    truncated,
    unsafeResolverInputs,
    read: async (file) => {
      const r = await repo.read(file.absPath, opts.maxFileBytes);
      return 'bytes' in r ? r.bytes : undefined;
    },
  };
}
