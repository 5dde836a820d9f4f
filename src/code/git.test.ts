import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { git, makeRepo } from '../../test/helpers/code-fixtures.ts';
import { startGitHttpServer, type GitHttpServer } from '../../test/helpers/git-http-server.ts';
import { gitClone, pinnedRemote, type GitRemoteOptions } from './git.ts';

const OPTS: GitRemoteOptions = { timeoutMs: 60_000, maxBytes: 64 * 1024 * 1024 };

describe('gitClone', () => {
  let dir: string;
  let server: GitHttpServer;
  const savedHome = process.env.HOME;

  beforeAll(async () => {
    dir = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-git-')));
    const work = path.join(dir, 'work');
    makeRepo(work, { 'a.ts': 'export const a = 1;\n' });
    symlinkSync('/etc/passwd', path.join(work, 'passwd'));
    git(work, 'add', 'passwd');
    git(work, 'commit', '-qm', 'a link');
    execFileSync('git', ['clone', '-q', '--bare', work, path.join(dir, 'srv', 'repo.git')]);
    server = await startGitHttpServer(path.join(dir, 'srv'), { requireAuth: true });
  });
  afterEach(() => {
    process.env.HOME = savedHome;
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects to the address the policy checked, not to what the name resolves to now', async () => {
    // `.invalid` never resolves (RFC 6761): the clone can only work through the pinned address.
    const dest = path.join(dir, 'pinned');
    const url = new URL(`http://pinned.invalid:${server.port}/repo.git`);
    const netrcHome = mkdtempSync(path.join(tmpdir(), 'engram-home-'));
    writeFileSync(path.join(netrcHome, '.netrc'), 'machine pinned.invalid login leaked password secret\n');
    // What git would find in the server user's HOME: never used.
    process.env.HOME = netrcHome;
    const before = server.authorizations.length;
    const err = await gitClone(
      { url, target: { url, host: 'pinned.invalid', port: server.port, addresses: ['127.0.0.1'] } },
      dest,
      OPTS,
    ).catch((e: unknown) => e);
    rmSync(netrcHome, { recursive: true, force: true });
    // The server asks for credentials; git has none to give (no ~/.netrc, no helper, no prompt).
    expect(String(err)).toMatch(/Authentication failed|could not read Username|terminal prompts disabled/);
    expect(server.authorizations.slice(before)).toEqual([]);
    expect(server.requests.some((p) => p.startsWith('/repo.git'))).toBe(true);
    expect(existsSync(dest)).toBe(false);
  });

  it('checks symbolic links out as plain files', async () => {
    const open = await startGitHttpServer(path.join(dir, 'srv'));
    try {
      const dest = path.join(dir, 'links');
      const url = new URL(`http://pinned.invalid:${open.port}/repo.git`);
      await gitClone(
        { url, target: { url, host: 'pinned.invalid', port: open.port, addresses: ['127.0.0.1'] } },
        dest,
        OPTS,
      );
      expect(lstatSync(path.join(dest, 'passwd')).isSymbolicLink()).toBe(false);
      expect(readFileSync(path.join(dest, 'passwd'), 'utf8')).toBe('/etc/passwd');
    } finally {
      await open.close();
    }
  });
});

describe('pinnedRemote', () => {
  it('pins https through curl’s resolve table and ssh and git:// by address, enabling only that transport', () => {
    const https = new URL('https://git.example.com/o/r.git');
    expect(
      pinnedRemote({
        url: https,
        target: { url: https, host: 'git.example.com', port: 443, addresses: ['140.82.112.3', '2606:50c0::1'] },
      }),
    ).toEqual({
      url: 'https://git.example.com/o/r.git',
      config: [
        '-c',
        'protocol.https.allow=always',
        '-c',
        'http.curloptResolve=git.example.com:443:140.82.112.3,[2606:50c0::1]',
      ],
    });
    const ssh = new URL('ssh://git@git.example.com/o/r.git');
    expect(
      pinnedRemote({ url: ssh, target: { url: ssh, host: 'git.example.com', port: 22, addresses: ['2606:50c0::1'] } }),
    ).toEqual({ url: 'ssh://git@[2606:50c0::1]/o/r.git', config: ['-c', 'protocol.ssh.allow=always'] });
  });
});
