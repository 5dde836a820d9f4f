import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, makeRepo } from '../helpers/code-fixtures.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface RepoJson {
  id: string;
  status: string;
  package: { manager: string; name: string; version: string } | null;
  lastError: string | null;
  progress: { parsed: number; failed: number; skippedLinks: number; skippedTooLarge: number };
}
interface JobJson {
  id: string;
  state: string;
  attempts: number;
  lastError: string | null;
}

/** Large enough for a file that takes more than PARSE_WORKER_MAX_MB to parse. */
const MAX_FILE_BYTES = 1_100_000;
const MAX_REPO_BYTES = 1_500_000;
const PARSE_WORKER_MAX_MB = 32;
/** 1 MiB of calls: about 340,000 references, well over 32 MB of parse results. */
const HEAVY_SOURCE = 'f(a);\n'.repeat(170_000);

/**
 * What a tenant's repository may do to the shared server (docs/security.md,
 * "Code indexing sandbox"): links to /dev/zero or out of the tree, files over
 * the caps, repositories over the byte quota. Each must leave the server up
 * and the org's other repositories indexable, fail its own run clearly when
 * the index would be wrong, and never be retried when a retry would fail again.
 */
describe(`code indexing sandbox (${backend})`, () => {
  let t: TestEngram;
  let roots: string;
  let outside: string;
  let a: TestOrg;

  const call = (method: 'GET' | 'POST', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: a.auth, ...(payload === undefined ? {} : { payload }) });
  /** Registers `dir`, runs the queue, and returns the repo with its index job. */
  const index = async (dir: string): Promise<{ repo: RepoJson; job: JobJson }> => {
    const res = await call('POST', '/v1/repos', { path: dir });
    expect(res.statusCode).toBe(202);
    const id = res.json<RepoJson>().id;
    await t.engram.worker.drain();
    const repo = (await call('GET', `/v1/repos/${id}`)).json<RepoJson>();
    const jobs = (await call('GET', '/v1/jobs?kind=index_repo&limit=100')).json<{ items: JobJson[] }>().items;
    // The newest index job is this repo's (jobs are listed newest first).
    const job = jobs[0];
    if (job === undefined) throw new Error('no index job');
    return { repo, job };
  };
  const repoDir = (name: string, files: Record<string, string>): string => {
    // Each org registers under its own directory, <root>/<org slug>/.
    const dir = path.join(roots, a.slug, name);
    makeRepo(dir, files);
    return dir;
  };

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-sandbox-')));
    outside = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-outside-')));
    writeFileSync(path.join(outside, 'package.json'), JSON.stringify({ name: 'outside-secret', version: '6.6.6' }));
    writeFileSync(path.join(outside, 'ignore-list'), 'secret.ts\n');
    t = await createTestEngram({
      CODE_ALLOWED_ROOTS: roots,
      CODE_MAX_FILE_BYTES: String(MAX_FILE_BYTES),
      CODE_MAX_REPO_BYTES: String(MAX_REPO_BYTES),
      CODE_PARSE_THREADS: '1',
      CODE_PARSE_WORKER_MAX_MB: String(PARSE_WORKER_MAX_MB),
      JOBS_MAX_ATTEMPTS: '5',
    });
    a = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    rmSync(roots, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('indexes a repository whose .gitignore files link to /dev/zero and out of the tree, following neither', async () => {
    const dir = repoDir('ignore-links', {
      'src/a.ts': 'export function a(): number {\n  return 1;\n}\n',
      'src/secret.ts': 'export function secret(): number {\n  return 2;\n}\n',
    });
    symlinkSync('/dev/zero', path.join(dir, '.gitignore'));
    symlinkSync(path.join(outside, 'ignore-list'), path.join(dir, 'src', '.gitignore'));
    const { repo, job } = await index(dir);
    expect(repo.lastError).toBeNull();
    expect(repo.status).toBe('indexed');
    expect(repo.progress.parsed).toBe(2);
    expect(repo.progress.skippedLinks).toBe(2);
    expect(job.state).toBe('succeeded');
  });

  it('fails a run on a committed .gitignore over the cap, once, with the reason', async () => {
    const dir = repoDir('huge-ignore', {
      '.gitignore': '*.gen.ts\n'.repeat(MAX_FILE_BYTES / 4),
      'a.ts': 'export const a = 1;\n',
    });
    const { repo, job } = await index(dir);
    expect(repo.status).toBe('failed');
    expect(repo.lastError).toMatch(/^PAYLOAD_TOO_LARGE: \.gitignore is larger than CODE_MAX_FILE_BYTES/);
    expect(job.state).toBe('dead');
    expect(job.attempts).toBe(1);
  });

  it('does not read a package.json that links out of the tree: neither the identity nor the SCIP ids show it', async () => {
    const dir = repoDir('linked-manifest', { 'src/a.ts': 'export function linkedFn(): number {\n  return 1;\n}\n' });
    symlinkSync(path.join(outside, 'package.json'), path.join(dir, 'package.json'));
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'link the manifest');
    const { repo } = await index(dir);
    expect(repo.status).toBe('indexed');
    expect(repo.package).toEqual({ manager: '.', name: 'linked-manifest', version: '.' });
    expect(repo.progress.skippedLinks).toBe(1);
    const res = await call('GET', '/v1/code/symbols?q=linkedFn');
    expect(res.statusCode).toBe(200);
    const items = res.json<{ items: Array<{ symbol: string }> }>().items;
    expect(items).toHaveLength(1);
    expect(items[0]?.symbol).not.toContain('outside-secret');
  });

  it('fails a run whose file exhausts the parser thread’s memory, once, and keeps indexing other repositories', async () => {
    const dir = repoDir('heavy', { 'heavy.js': HEAVY_SOURCE, 'ok.ts': 'export const ok = 1;\n' });
    const { repo, job } = await index(dir);
    expect(repo.status).toBe('failed');
    expect(repo.lastError).toMatch(/^PAYLOAD_TOO_LARGE: .*CODE_PARSE_WORKER_MAX_MB = 32 MB/);
    expect(job.state).toBe('dead');
    expect(job.attempts).toBe(1);
    const next = await index(repoDir('after-heavy', { 'b.ts': 'export function afterHeavy(): void {}\n' }));
    expect(next.repo.status).toBe('indexed');
    expect(next.repo.progress.parsed).toBe(1);
  });

  it('fails a run over the per-repository byte quota before reading anything, once', async () => {
    const big = `// ${'x'.repeat(1_000_000)}\n`;
    const { repo, job } = await index(repoDir('over-quota', { 'a.ts': big, 'b.ts': big }));
    expect(repo.status).toBe('failed');
    expect(repo.lastError).toMatch(/^PAYLOAD_TOO_LARGE: The repository has 2000008 bytes .*CODE_MAX_REPO_BYTES/);
    expect(repo.progress.parsed).toBe(0);
    expect(job.state).toBe('dead');
    expect(job.attempts).toBe(1);
  });

  it('indexes JS/TS whose package.json files link to /dev/zero, without the module resolver that would read them', async () => {
    const dir = repoDir('resolver-links', {
      'tsconfig.json': '{}',
      'src/a.ts': "import { b } from './b';\nimport evil from 'evil';\nexport const a = b() + evil;\n",
      'src/b.ts': 'export function b(): number {\n  return 1;\n}\n',
    });
    symlinkSync('/dev/zero', path.join(dir, 'src', 'package.json'));
    mkdirSync(path.join(dir, 'node_modules', 'evil'), { recursive: true });
    symlinkSync('/dev/zero', path.join(dir, 'node_modules', 'evil', 'package.json'));
    const { repo } = await index(dir);
    expect(repo.lastError).toBeNull();
    expect(repo.status).toBe('indexed');
    expect(repo.progress.parsed).toBe(2);
    const res = await call('GET', `/v1/code/references?symbol=${encodeURIComponent('b')}`);
    expect(res.statusCode).toBe(200);
  });
});
