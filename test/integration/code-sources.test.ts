import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INDEX_REPO } from '../../src/domain/code/code.types.ts';
import { PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';
import { git, makeRepo } from '../helpers/code-fixtures.ts';
import { startGitHttpServer, type GitHttpServer } from '../helpers/git-http-server.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface RepoJson {
  id: string;
  status: string;
  lastError: string | null;
}
interface ErrorJson {
  error: { code: string; message: string; requestId: string; details?: unknown };
}

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });

/** Where tenants' repositories come from: local paths confined per org, git URLs through the outbound policy. */
describe(`repository sources (${backend})`, () => {
  let t: TestEngram;
  let roots: string;
  let a: TestOrg;
  let b: TestOrg;
  /** A loopback listener that must never see a connection: every URL to it is refused before git runs. */
  const trap = net.createServer((socket) => {
    trapped += 1;
    socket.destroy();
  });
  let trapped = 0;
  let trapPort: number;

  const call = (org: TestOrg, method: 'GET' | 'POST', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: org.auth, ...(payload === undefined ? {} : { payload }) });
  const repoOf = async (org: TestOrg, id: string): Promise<RepoJson> =>
    (await call(org, 'GET', `/v1/repos/${id}`)).json();
  const repoCount = async (org: TestOrg): Promise<number> =>
    (await call(org, 'GET', '/v1/repos')).json<{ items: unknown[] }>().items.length;
  /** What a client sees of an error, without the request id. */
  const answer = (body: ErrorJson) => ({
    code: body.error.code,
    message: body.error.message,
    details: body.error.details,
  });
  /** A repository row as an earlier version (one server-wide root list, no outbound policy) would have stored it. */
  const insertLegacyRepo = async (org: TestOrg, sourceKind: 'path' | 'url', location: string): Promise<string> => {
    const tenant = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
    const id = uuidv7();
    const jobId = uuidv7();
    await tenant.withTenant(org.orgId, async ({ code, jobs }) => {
      await code.insertRepo({ id, name: 'legacy', sourceKind, location, indexJobId: jobId });
      await jobs.insertJob({ id: jobId, kind: INDEX_REPO, payload: { repoId: id }, maxAttempts: 1 });
    });
    return id;
  };

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-sources-')));
    t = await createTestEngram({ CODE_ALLOWED_ROOTS: roots });
    a = await t.makeOrg();
    b = await t.makeOrg();
    makeRepo(path.join(roots, a.slug, 'secret'), { 'src/keys.ts': 'export const A_SECRET = "a";\n' });
    makeRepo(path.join(roots, b.slug, 'mine'), { 'src/mine.ts': 'export function bOwn(): number {\n  return 1;\n}\n' });
    trapPort = await listen(trap);
  });
  afterAll(async () => {
    trap.close();
    await t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  describe('local paths', () => {
    it('registers and indexes a directory under <root>/<org slug>/', async () => {
      const res = await call(b, 'POST', '/v1/repos', { path: path.join(roots, b.slug, 'mine') });
      expect(res.statusCode).toBe(202);
      await t.engram.worker.drain();
      expect((await repoOf(b, res.json<RepoJson>().id)).status).toBe('indexed');
    });

    it('refuses another org’s directory, the root, and symbolic links out of the org’s directory, with one answer whether the path exists or not', async () => {
      const bDir = path.join(roots, b.slug);
      symlinkSync(path.join(roots, a.slug, 'secret'), path.join(bDir, 'to-a'));
      symlinkSync(path.join(roots, a.slug, 'missing'), path.join(bDir, 'to-a-missing'));
      const refused = [
        roots,
        path.join(roots, a.slug),
        path.join(roots, a.slug, 'secret'),
        path.join(roots, a.slug, 'secret', 'src'),
        path.join(roots, a.slug, 'missing'),
        path.join(bDir, '..', a.slug, 'secret'),
        path.join(bDir, 'to-a'),
        path.join(bDir, 'to-a-missing'),
        path.join(bDir, 'missing'),
        path.join(bDir, 'mine', 'src', 'mine.ts'),
        '/etc',
        '/nonexistent-root/x',
      ];
      const answers = [];
      for (const p of refused) {
        for (const payload of [{ path: p }, { url: pathToFileURL(p).toString() }]) {
          const res = await call(b, 'POST', '/v1/repos', payload);
          expect([p, res.statusCode]).toEqual([p, 400]);
          answers.push(answer(res.json<ErrorJson>()));
        }
      }
      expect(answers[0]?.code).toBe('PATH_NOT_ALLOWED');
      expect(new Set(answers.map((x) => JSON.stringify(x))).size).toBe(1);
      expect(JSON.stringify(answers[0])).not.toContain(a.slug);
      expect(await repoCount(b)).toBe(1);
    });

    it('refuses a path another org registered, with the same answer as any path it may not register', async () => {
      // B's row predates per-org directories: it names A's directory.
      const dir = path.join(roots, a.slug, 'claimed');
      makeRepo(dir, { 'x.ts': 'export const x = 1;\n' });
      await insertLegacyRepo(b, 'path', dir);
      const refused = await call(a, 'POST', '/v1/repos', { path: dir });
      expect(refused.statusCode).toBe(400);
      const other = await call(a, 'POST', '/v1/repos', { path: path.join(roots, b.slug, 'mine') });
      expect(answer(refused.json<ErrorJson>())).toEqual(answer(other.json<ErrorJson>()));
      // And B's row no longer indexes: it is outside B's directory.
      await t.engram.worker.drain();
      const legacy = (await call(b, 'GET', '/v1/repos')).json<{ items: Array<RepoJson & { name: string }> }>();
      const row = legacy.items.find((r) => r.name === 'legacy');
      expect([row?.status, row?.lastError]).toEqual(['failed', expect.stringMatching(/^PATH_NOT_ALLOWED/)]);
    });

    it('checks again at every run: a registered directory swapped for a link out of the org’s directory fails the run', async () => {
      const dir = path.join(roots, a.slug, 'swapped');
      makeRepo(dir, { 'src/ok.ts': 'export function fine(): number {\n  return 1;\n}\n' });
      const res = await call(a, 'POST', '/v1/repos', { path: dir });
      expect(res.statusCode).toBe(202);
      const id = res.json<RepoJson>().id;
      await t.engram.worker.drain();
      expect((await repoOf(a, id)).status).toBe('indexed');

      rmSync(dir, { recursive: true, force: true });
      symlinkSync(path.join(roots, b.slug, 'mine'), dir);
      expect((await call(a, 'POST', `/v1/repos/${id}/index`)).statusCode).toBe(202);
      await t.engram.worker.drain();
      const after = await repoOf(a, id);
      expect([after.status, after.lastError]).toEqual(['failed', expect.stringMatching(/^PATH_NOT_ALLOWED/)]);
      const found = (await call(a, 'GET', '/v1/code/symbols?q=bOwn')).json<{ items: unknown[] }>().items;
      expect(found).toEqual([]);
    });
  });

  describe('git URLs', () => {
    it.each([
      'https://127.0.0.1/x.git',
      'https://[::1]/x',
      'https://0x7f000001/x',
      'https://2130706433/x',
      'https://169.254.169.254/',
      'https://10.1.2.3/x.git',
      'https://192.168.0.1/x.git',
      'https://172.16.0.1/x.git',
      'https://100.64.0.1/x.git',
      'https://0.0.0.0/x.git',
      'https://224.0.0.1/x.git',
      'https://[fd00::1]/x.git',
      'https://[fe80::1]/x.git',
      'https://[::ffff:127.0.0.1]/x.git',
      'https://[::ffff:a9fe:a9fe]/x.git',
      'https://localhost/x.git',
      'ssh://git@127.0.0.1/x.git',
      'ssh://git@example.com/x.git',
      'git://example.com/x.git',
      'http://example.com/x.git',
      'https://example.com:8443/x.git',
    ])('refuses %s with 400 URL_NOT_ALLOWED', async (url) => {
      const res = await call(a, 'POST', '/v1/repos', { url });
      expect([res.statusCode, res.json<ErrorJson>().error.code]).toEqual([400, 'URL_NOT_ALLOWED']);
    });

    it('registers nothing it refused', async () => {
      const before = await repoCount(a);
      await call(a, 'POST', '/v1/repos', { url: `https://127.0.0.1:${trapPort}/x.git` });
      expect(await repoCount(a)).toBe(before);
    });

    it('checks again before every fetch and never connects: a stored loopback URL fails its run', async () => {
      const id = await insertLegacyRepo(a, 'url', `https://127.0.0.1:${trapPort}/x.git`);
      await t.engram.worker.drain();
      const repo = await repoOf(a, id);
      expect([repo.status, repo.lastError]).toEqual(['failed', expect.stringMatching(/^URL_NOT_ALLOWED/)]);
      expect(trapped).toBe(0);
    });
  });

  describe('file URLs', () => {
    it.each(['file://evilhost/x', 'file://evilhost/', 'file:///tmp/a%2Fb', 'file:///tmp/%00x'])(
      'answers %s with 400, not 500',
      async (url) => {
        const res = await call(a, 'POST', '/v1/repos', { url });
        expect([res.statusCode, res.json<ErrorJson>().error.code]).toEqual([
          400,
          expect.stringMatching(/^(URL_NOT_ALLOWED|PATH_NOT_ALLOWED|VALIDATION_FAILED)$/),
        ]);
      },
    );

    it('clones a file:// URL under the org’s directory', async () => {
      const dir = path.join(roots, a.slug, 'by-url');
      makeRepo(dir, { 'm.py': 'def fn():\n    return 1\n' });
      const res = await call(a, 'POST', '/v1/repos', { url: pathToFileURL(dir).toString() });
      expect(res.statusCode).toBe(202);
      await t.engram.worker.drain();
      expect((await repoOf(a, res.json<RepoJson>().id)).status).toBe('indexed');
    });
  });
});

/**
 * Git over HTTP from a loopback server the operator allowed by host and
 * port: the clone runs with git's hardened configuration (no redirects, a
 * size cap). The only traffic of these tests goes to loopback.
 */
describe(`cloning through the outbound policy (${backend})`, () => {
  let t: TestEngram;
  let served: string;
  let org: TestOrg;
  let port: number;
  let server: GitHttpServer;
  const MAX_CLONE_BYTES = 2 * 1024 * 1024;

  /** A bare repository served by the dumb HTTP protocol (static files). */
  const serve = (name: string, files: Record<string, string | Buffer>) => {
    const work = path.join(served, '..', `work-${name}`);
    mkdirSync(work, { recursive: true });
    git(work, 'init', '-q', '-b', 'main');
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(work, rel)), { recursive: true });
      writeFileSync(path.join(work, rel), content);
    }
    git(work, 'add', '-A');
    git(work, 'commit', '-q', '-m', 'initial');
    execFileSync('git', ['clone', '-q', '--bare', work, path.join(served, `${name}.git`)]);
  };

  beforeAll(async () => {
    served = path.join(realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-git-http-'))), 'srv');
    mkdirSync(served);
    serve('small', { 'src/small.ts': 'export function overHttp(): number {\n  return 1;\n}\n' });
    serve('big', { 'blob.bin': randomBytes(MAX_CLONE_BYTES + 512 * 1024) });
    server = await startGitHttpServer(served);
    port = server.port;
    t = await createTestEngram({
      CODE_GIT_PROTOCOLS: 'https,http',
      CODE_GIT_ALLOWED_HOSTS: `127.0.0.1:${port}`,
      CODE_GIT_MAX_CLONE_BYTES: String(MAX_CLONE_BYTES),
    });
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await server.close();
    await t.close();
    rmSync(path.dirname(served), { recursive: true, force: true });
  });

  const register = async (url: string): Promise<RepoJson> => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/repos', headers: org.auth, payload: { url } });
    expect(res.statusCode, res.body).toBe(202);
    await t.engram.worker.drain();
    const got = await t.app.inject({ method: 'GET', url: `/v1/repos/${res.json<RepoJson>().id}`, headers: org.auth });
    return got.json<RepoJson>();
  };

  it('clones from a host the operator allowed, on its allowed port', async () => {
    const repo = await register(`http://127.0.0.1:${port}/small.git`);
    expect([repo.status, repo.lastError]).toEqual(['indexed', null]);
  });

  it('still refuses the same host on another port', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/repos',
      headers: org.auth,
      payload: { url: `http://127.0.0.1:${port + 1}/small.git` },
    });
    expect([res.statusCode, res.json<ErrorJson>().error.code]).toEqual([400, 'URL_NOT_ALLOWED']);
  });

  it('does not follow a redirect', async () => {
    const before = server.requests.length;
    const repo = await register(`http://127.0.0.1:${port}/moved/small.git`);
    expect(repo.status).toBe('failed');
    expect(server.requests.slice(before).filter((p) => !p.startsWith('/moved/'))).toEqual([]);
  });

  it('stops a clone larger than CODE_GIT_MAX_CLONE_BYTES and leaves no clone behind', async () => {
    const repo = await register(`http://127.0.0.1:${port}/big.git`);
    expect([repo.status, repo.lastError]).toEqual(['failed', expect.stringMatching(/CODE_GIT_MAX_CLONE_BYTES/)]);
    expect(existsSync(path.join(t.config.dataDir, 'repos', org.orgId, repo.id))).toBe(false);
  });
});
