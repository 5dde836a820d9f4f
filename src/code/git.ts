import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AppError, errors } from '../errors.ts';
import type { CheckedTarget } from '../net/outbound-policy.ts';

/** Schemes a repository URL may name at all; which of them are enabled is the outbound policy's call. */
export const GIT_URL_SCHEMES = ['https:', 'http:', 'ssh:', 'git:', 'file:'] as const;

const QUERY_TIMEOUT_MS = 30_000;
/** How often a running clone's size on disk is measured against the cap. */
const SIZE_POLL_MS = 500;

/**
 * What every git run gets, whatever the server user's configuration says:
 * no transport at all unless the command enables its own (one per remote),
 * no hooks, no credential helpers (the empty value resets the list), no
 * redirects (a redirect would reach a host the policy never checked), no
 * fsmonitor command from a tenant's repository configuration.
 */
const SAFE_CONFIG = [
  '-c',
  'protocol.allow=never',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'core.fsmonitor=false',
  '-c',
  'credential.helper=',
  '-c',
  'http.followRedirects=false',
];

/** How git reaches remotes: the limits of a fetch and what ssh may use. */
export interface GitRemoteOptions {
  /** A clone or fetch is killed after this long. */
  readonly timeoutMs: number;
  /** A clone or fetch that grows the tree past this many bytes on disk is stopped (and a clone removed). */
  readonly maxBytes: number;
  /** known_hosts for ssh (host keys are checked strictly: unknown hosts are refused). */
  readonly sshKnownHosts?: string | undefined;
  /** The only key ssh offers. */
  readonly sshKeyFile?: string | undefined;
}

/** A remote to fetch: a URL, and for network URLs the policy's answer (connect to those addresses only). */
export interface GitRemote {
  readonly url: URL;
  /** Undefined for file:// (the caller checked the path). */
  readonly target?: CheckedTarget | undefined;
}

export class GitError extends Error {
  override readonly name = 'GitError';
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * The environment of every git run: PATH, and an empty HOME of its own —
 * never the server user's, whose ~/.gitconfig, ~/.ssh (keys, config),
 * ~/.netrc and credential stores a tenant's URL must not reach. No system or
 * global configuration, no prompts.
 */
export function gitEnvironment(home: string, ssh?: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: home,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ASKPASS: 'true',
    SSH_ASKPASS: 'true',
    ...(ssh === undefined ? {} : { GIT_SSH_COMMAND: ssh, GIT_SSH_VARIANT: 'ssh' }),
  };
}

/**
 * ssh with nothing of the server user's: no ~/.ssh/config (`-F /dev/null`),
 * no agent, only the configured key, host keys checked against the configured
 * known_hosts. `HostKeyAlias` keeps checking the name the policy resolved
 * while the connection goes to the checked address.
 */
function sshCommand(opts: GitRemoteOptions, host: string | undefined): string {
  const args = [
    'ssh',
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${opts.sshKnownHosts ?? '/dev/null'}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'IdentityAgent=none',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'ConnectTimeout=30',
    ...(opts.sshKeyFile === undefined ? [] : ['-i', opts.sshKeyFile]),
    ...(host === undefined ? [] : ['-o', `HostKeyAlias=${host}`]),
  ];
  return args.map(shellQuote).join(' ');
}

/**
 * The arguments and URL that make git connect to the checked addresses, not
 * to a second DNS answer (DNS rebinding). https/http: curl's own resolve
 * table (`http.curloptResolve`), so TLS still checks the certificate of the
 * name; ssh and git://: the URL names the address itself.
 */
export function pinnedRemote(remote: GitRemote): { url: string; config: string[] } {
  const t = remote.target;
  const protocol = remote.url.protocol.replace(/:$/, '');
  const config = ['-c', `protocol.${protocol}.allow=always`];
  if (t === undefined) return { url: remote.url.href, config };
  const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);
  if (protocol === 'https' || protocol === 'http') {
    config.push('-c', `http.curloptResolve=${t.host}:${t.port}:${t.addresses.map(bracket).join(',')}`);
    return { url: remote.url.href, config };
  }
  const first = t.addresses[0] ?? t.host;
  const url = new URL(remote.url.href);
  url.hostname = bracket(first);
  return { url: url.href, config };
}

interface RunOptions {
  readonly cwd?: string | undefined;
  readonly timeoutMs?: number | undefined;
  readonly remote?: { readonly opts: GitRemoteOptions; readonly host: string | undefined } | undefined;
  /** Measured while git runs: git is killed when it grows past `maxBytes`. */
  readonly watch?: { readonly dir: string; readonly maxBytes: number } | undefined;
}

/** Bytes under `dir` (files and links as stored, not followed); 0 when it does not exist yet. */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else total += (await lstat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

const tooLarge = (maxBytes: number): AppError =>
  new AppError(
    'PAYLOAD_TOO_LARGE',
    `The repository is larger than this server accepts (CODE_GIT_MAX_CLONE_BYTES = ${maxBytes} bytes)`,
    { details: { maxBytes } },
  );

async function git(args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const home = await mkdtemp(path.join(tmpdir(), 'engram-git-home-'));
  const ssh = opts.remote === undefined ? undefined : sshCommand(opts.remote.opts, opts.remote.host);
  let exceeded = false;
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(
        'git',
        [...SAFE_CONFIG, ...args],
        {
          cwd: opts.cwd,
          timeout: opts.timeoutMs ?? QUERY_TIMEOUT_MS,
          killSignal: 'SIGKILL',
          env: gitEnvironment(home, ssh),
          maxBuffer: 16 * 1024 * 1024,
        },
        (err, stdout, stderr) => {
          clearInterval(poll);
          if (exceeded && opts.watch !== undefined) reject(tooLarge(opts.watch.maxBytes));
          else if (err !== null) reject(new GitError(`git ${args[0] ?? ''} failed: ${stderr.trim() || err.message}`));
          else resolve(stdout.trim());
        },
      );
      const watch = opts.watch;
      let measuring = false;
      const poll = setInterval(() => {
        if (watch === undefined || measuring) return;
        measuring = true;
        void treeBytes(watch.dir).then((n) => {
          measuring = false;
          if (n > watch.maxBytes) {
            exceeded = true;
            child.kill('SIGKILL');
          }
        });
      }, SIZE_POLL_MS);
      poll.unref();
      if (watch === undefined) clearInterval(poll);
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/**
 * Parses a repository URL and refuses what we will never fetch: other
 * schemes, embedded passwords (they would be stored and shown to the org),
 * options in disguise (a leading `-`) and control characters. Which hosts,
 * ports and enabled schemes are reachable is the outbound policy's call.
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
    throw errors.validation('The repository URL is not valid: use https:// (or a scheme the operator enabled)');
  }
  if (!(GIT_URL_SCHEMES as readonly string[]).includes(url.protocol)) {
    throw new AppError('URL_NOT_ALLOWED', `Repository URLs cannot use ${url.protocol}//`, {
      details: { reason: 'scheme', scheme: url.protocol.replace(/:$/, '') },
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

/**
 * A shallow clone of the default branch (no tags, no submodules, symbolic
 * links checked out as plain files) into `dest`, which must not exist; on
 * any failure `dest` is removed.
 */
export async function gitClone(remote: GitRemote, dest: string, opts: GitRemoteOptions): Promise<void> {
  const { url, config } = pinnedRemote(remote);
  try {
    await git(
      [
        ...config,
        'clone',
        '-c',
        'core.symlinks=false',
        '--depth',
        '1',
        '--no-tags',
        '--single-branch',
        '--',
        url,
        dest,
      ],
      {
        timeoutMs: opts.timeoutMs,
        remote: { opts, host: remote.target?.host },
        watch: { dir: dest, maxBytes: opts.maxBytes },
      },
    );
    if ((await treeBytes(dest)) > opts.maxBytes) throw tooLarge(opts.maxBytes);
  } catch (e) {
    await rm(dest, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Brings a shallow clone to the remote's current default-branch head,
 * fetching from `remote` (checked again by the caller), not from the URL
 * stored in the clone's configuration.
 */
export async function gitUpdate(dir: string, remote: GitRemote, opts: GitRemoteOptions): Promise<void> {
  const { url, config } = pinnedRemote(remote);
  await git([...config, 'fetch', '--depth', '1', '--no-tags', '--', url, 'HEAD'], {
    cwd: dir,
    timeoutMs: opts.timeoutMs,
    remote: { opts, host: remote.target?.host },
    watch: { dir, maxBytes: opts.maxBytes },
  });
  await git(['-c', 'core.symlinks=false', 'reset', '--hard', '-q', 'FETCH_HEAD'], { cwd: dir });
  if ((await treeBytes(dir)) > opts.maxBytes) throw tooLarge(opts.maxBytes);
}
