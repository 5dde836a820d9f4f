import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { round } from './stats.ts';

/** Facts every benchmark result records: what code ran, on what machine. */

/** HEAD, with `+dirty` when src/ or migrations/ differ from it (the numbers then belong to uncommitted code). */
export function gitCommit(): string | undefined {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: 'pipe' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src', 'migrations') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+dirty' : ''}`;
  } catch {
    return undefined;
  }
}

export function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim(),
    totalMemBytes: os.totalmem(),
    totalMemGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: os.platform(),
    release: os.release(),
    arch: os.arch(),
  };
}

/** `<prefix>-2026-11-22T10-00-00.json`: a file name from the start time. */
export const resultFileName = (prefix: string, startedAt: Date): string =>
  `${prefix}-${startedAt.toISOString().replaceAll(':', '-').replace(/\..+$/, '')}.json`;
