import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/config.ts';
import { isAppError } from '../errors.ts';
import { LocalRepoWorkspace } from './local-workspace.ts';

const ACME = '018f0000-0000-7000-8000-000000000001';
const BETA = '018f0000-0000-7000-8000-000000000002';

describe(LocalRepoWorkspace.name, () => {
  const top = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-ws-')));
  const granted = path.join(top, 'elsewhere', 'acme-src');
  mkdirSync(path.join(granted, 'repo'), { recursive: true });
  mkdirSync(path.join(top, 'root', 'beta', 'repo'), { recursive: true });
  const config = loadConfig({
    ENGRAM_DATA_DIR: path.join(top, 'data'),
    CODE_ALLOWED_ROOTS: path.join(top, 'root'),
    CODE_ORG_DIRS: `acme=${granted}`,
  });
  const ws = new LocalRepoWorkspace({
    dataDir: config.dataDir,
    ...config.code,
    orgSlug: async (id) => ({ [ACME]: 'acme', [BETA]: 'beta' })[id],
  });
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: unknown) => (isAppError(e) ? e.code : e),
    );
  afterAll(() => rmSync(top, { recursive: true, force: true }));

  describe('resolveLocalPath', () => {
    it('lets an org register under the directory CODE_ORG_DIRS gives it, and no other org', async () => {
      expect(await ws.resolveLocalPath(ACME, path.join(granted, 'repo'))).toBe(path.join(granted, 'repo'));
      expect(await code(ws.resolveLocalPath(BETA, path.join(granted, 'repo')))).toBe('PATH_NOT_ALLOWED');
      expect(await code(ws.resolveLocalPath(ACME, path.join(top, 'root', 'beta', 'repo')))).toBe('PATH_NOT_ALLOWED');
      expect(await ws.resolveLocalPath(BETA, path.join(top, 'root', 'beta', 'repo'))).toBe(
        path.join(top, 'root', 'beta', 'repo'),
      );
    });

    it('refuses an unknown org everything', async () => {
      const unknown = '018f0000-0000-7000-8000-000000000009';
      expect(await code(ws.resolveLocalPath(unknown, path.join(granted, 'repo')))).toBe('PATH_NOT_ALLOWED');
    });
  });

  describe('readTreeFile', () => {
    it('reads a regular file of the tree, and never one through a link, a special file or one over the cap', async () => {
      const repo = path.join(top, 'root', 'beta', 'repo');
      writeFileSync(path.join(repo, 'a.ts'), 'export const a = 1;\n');
      writeFileSync(path.join(top, 'secret.txt'), 'outside secret');
      symlinkSync(path.join(top, 'secret.txt'), path.join(repo, 'out.ts'));
      symlinkSync('/dev/zero', path.join(repo, 'zero.ts'));
      writeFileSync(path.join(repo, 'big.ts'), 'x'.repeat(config.code.maxFileBytes + 1));
      const read = (rel: string) =>
        ws.readTreeFile(BETA, { id: '018f0000-0000-7000-8000-0000000000aa', sourceKind: 'path', location: repo }, rel);
      expect(Buffer.from((await read('a.ts')) ?? []).toString()).toBe('export const a = 1;\n');
      expect(await read('out.ts')).toBeUndefined();
      expect(await read('zero.ts')).toBeUndefined();
      expect(await read('big.ts')).toBeUndefined();
      expect(await read('../repo/a.ts')).toBeDefined();
      expect(await read('../../acme/x.ts')).toBeUndefined();
    });
  });

  describe('the configuration', () => {
    const invalid = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return 'valid';
      } catch (e) {
        return isAppError(e) ? e.message : String(e);
      }
    };

    it('refuses nested roots and per-org directories that overlap a root or another org’s', () => {
      expect(invalid({ CODE_ALLOWED_ROOTS: '/srv/repos,/srv/repos/acme' })).toMatch(/roots must not nest/);
      expect(invalid({ CODE_ALLOWED_ROOTS: '/srv/repos', CODE_ORG_DIRS: 'acme=/srv/repos/x' })).toMatch(
        /overlaps CODE_ALLOWED_ROOTS/,
      );
      expect(invalid({ CODE_ORG_DIRS: 'acme=/srv/a,beta=/srv/a/b' })).toMatch(/overlaps \/srv\/a\/b \(beta\)/);
      expect(invalid({ CODE_ORG_DIRS: 'acme=relative/dir' })).toMatch(/<org slug>=<absolute directory>/);
      expect(invalid({ CODE_ORG_DIRS: 'acme=/srv/a,acme=/srv/b' })).toBe('valid');
    });

    it('refuses ssh without known hosts, unknown transports and malformed allowed hosts', () => {
      expect(invalid({ CODE_GIT_PROTOCOLS: 'https,ssh' })).toMatch(/CODE_GIT_SSH_KNOWN_HOSTS: required/);
      expect(invalid({ CODE_GIT_PROTOCOLS: 'https,ext' })).toMatch(/"ext" is not one of/);
      expect(invalid({ CODE_GIT_ALLOWED_HOSTS: 'git.corp/x' })).toMatch(/not a host or host:port/);
      expect(invalid({ CODE_GIT_ALLOWED_HOSTS: 'git.corp:8443,[::1]:9000' })).toBe('valid');
    });
  });
});
