import { execFile } from 'node:child_process';
import { errors } from '../errors.ts';

/** Schemes a repository URL may use; plain http, ext:: and the rest are refused. */
export const GIT_URL_SCHEMES = ['https:', 'ssh:', 'git:', 'file:'] as const;

const CLONE_TIMEOUT_MS = 10 * 60_000;
const QUERY_TIMEOUT_MS = 30_000;

/**
 * Only the transports we allow, even for anything git would reach on its own
 * (submodules, redirects); no prompts for credentials; no hooks or system and
 * global configuration.
 */
const SAFE_CONFIG = [
  '-c',
  'protocol.allow=never',
  '-c',
  'protocol.https.allow=always',
  '-c',
  'protocol.ssh.allow=always',
  '-c',
  'protocol.git.allow=always',
  '-c',
  'protocol.file.allow=always',
  '-c',
  'core.hooksPath=/dev/null',
];

/** The process's PATH and HOME (ssh finds its keys there), nothing else of its environment. */
const gitEnv = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? '/tmp',
  GIT_TERMINAL_PROMPT: '0',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_ASKPASS: 'true',
  GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new',
});

export class GitError extends Error {
  override readonly name = 'GitError';
}

function git(args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      [...SAFE_CONFIG, ...args],
      { cwd: opts.cwd, timeout: opts.timeoutMs ?? QUERY_TIMEOUT_MS, env: gitEnv(), maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err !== null) reject(new GitError(`git ${args[0] ?? ''} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout.trim());
      },
    );
  });
}

/**
 * Parses a repository URL and refuses what we will not fetch: other schemes,
 * embedded passwords (they would be stored and shown to the org), options in
 * disguise (a leading `-`) and control characters.
 */
export function parseGitUrl(raw: string): URL {
  const s = raw.trim();
  if (s === '' || s.startsWith('-') || /\s/.test(s) || [...s].some((c) => c.charCodeAt(0) < 0x20 || c === '\u007f')) {
    throw errors.validation('The repository URL is not valid');
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw errors.validation('The repository URL is not valid: use https://, ssh://, git:// or file://');
  }
  if (!(GIT_URL_SCHEMES as readonly string[]).includes(url.protocol)) {
    throw errors.validation(`Repository URLs must use https://, ssh://, git:// or file://, not ${url.protocol}//`, {
      scheme: url.protocol.replace(/:$/, ''),
    });
  }
  if (url.password !== '') throw errors.validation('Do not put credentials in the repository URL');
  if (url.protocol !== 'file:' && url.hostname === '') throw errors.validation('The repository URL names no host');
  return url;
}

/** HEAD's commit and branch of a work tree; both undefined when `dir` is not in a git repository. */
export async function gitHead(dir: string): Promise<{ commit: string | undefined; branch: string | undefined }> {
  const commit = await git(['rev-parse', '--verify', '-q', 'HEAD'], { cwd: dir }).catch(() => '');
  if (commit === '') return { commit: undefined, branch: undefined };
  const branch = await git(['symbolic-ref', '--short', '-q', 'HEAD'], { cwd: dir }).catch(() => '');
  return { commit, branch: branch === '' ? undefined : branch };
}

/** A shallow clone of the default branch (no tags, no submodules) into `dest`, which must not exist. */
export async function gitClone(url: string, dest: string): Promise<void> {
  await git(['clone', '--depth', '1', '--no-tags', '--single-branch', '--', url, dest], {
    timeoutMs: CLONE_TIMEOUT_MS,
  });
}

/** Brings a shallow clone to the remote's current default-branch head. */
export async function gitUpdate(dir: string): Promise<void> {
  await git(['fetch', '--depth', '1', '--no-tags', 'origin', 'HEAD'], { cwd: dir, timeoutMs: CLONE_TIMEOUT_MS });
  await git(['reset', '--hard', '-q', 'FETCH_HEAD'], { cwd: dir });
}
