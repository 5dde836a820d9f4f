import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Runs git in `cwd` with a fixed identity; returns trimmed stdout. */
export const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=Test', '-c', 'user.email=test@example.com', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();

/** Writes files (relative paths → content) under `root`, creating directories. */
export function writeFiles(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(root, rel);
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, content);
  }
}

/** A git repository at `root` (branch main) with `files` in one commit; returns the commit. */
export function makeRepo(root: string, files: Record<string, string>): string {
  mkdirSync(root, { recursive: true });
  git(root, 'init', '-q', '-b', 'main');
  writeFiles(root, files);
  git(root, 'add', '-A');
  git(root, 'commit', '-q', '-m', 'initial');
  return git(root, 'rev-parse', 'HEAD');
}

/** Temporary directories of files (`make`), all removed by `cleanup` (call it in afterEach). */
export function tempTrees(prefix: string): { make(files: Record<string, string>): string; cleanup(): void } {
  const dirs: string[] = [];
  return {
    make(files) {
      const root = mkdtempSync(path.join(tmpdir(), prefix));
      dirs.push(root);
      writeFiles(root, files);
      return root;
    },
    cleanup() {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}
