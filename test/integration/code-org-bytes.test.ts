import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, makeRepo, writeFiles } from '../helpers/code-fixtures.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface RepoJson {
  id: string;
  status: string;
  lastError: string | null;
  progress: { parsed: number };
}
interface JobJson {
  id: string;
  state: string;
  attempts: number;
  lastError: string | null;
}

const MAX_ORG_BYTES = 1_000;

/** One TypeScript file of exactly `bytes` bytes that defines `name`. */
const sourceOf = (name: string, bytes: number): string => {
  const head = `export function ${name}(): number {\n  return 1;\n}\n// `;
  return `${head}${'x'.repeat(bytes - head.length - 1)}\n`;
};

/**
 * CODE_MAX_ORG_BYTES (docs/security.md, "Code indexing sandbox"): the source
 * bytes one org may have indexed across all its repositories. A run that would
 * take the org past it fails once, before reading anything, and leaves every
 * index the org already has, including the repository's own, as it was.
 */
describe(`code indexing: the org's total indexed bytes (${backend})`, () => {
  let t: TestEngram;
  let roots: string;
  let a: TestOrg;
  let b: TestOrg;

  const call = (org: TestOrg, method: 'GET' | 'POST', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: org.auth, ...(payload === undefined ? {} : { payload }) });
  const lastJob = async (org: TestOrg): Promise<JobJson> => {
    const jobs = (await call(org, 'GET', '/v1/jobs?kind=index_repo&limit=100')).json<{ items: JobJson[] }>().items;
    // Jobs are listed newest first.
    const job = jobs[0];
    if (job === undefined) throw new Error('no index job');
    return job;
  };
  /** Registers `dir` for `org`, runs the queue, and returns the repo with its index job. */
  const index = async (org: TestOrg, dir: string): Promise<{ repo: RepoJson; job: JobJson }> => {
    const res = await call(org, 'POST', '/v1/repos', { path: dir });
    expect(res.statusCode).toBe(202);
    const id = res.json<RepoJson>().id;
    await t.engram.worker.drain();
    return { repo: (await call(org, 'GET', `/v1/repos/${id}`)).json<RepoJson>(), job: await lastJob(org) };
  };
  const reindex = async (org: TestOrg, id: string): Promise<{ repo: RepoJson; job: JobJson }> => {
    expect((await call(org, 'POST', `/v1/repos/${id}/index`)).statusCode).toBe(202);
    await t.engram.worker.drain();
    return { repo: (await call(org, 'GET', `/v1/repos/${id}`)).json<RepoJson>(), job: await lastJob(org) };
  };
  const repoDir = (org: TestOrg, name: string, files: Record<string, string>): string => {
    // Each org registers under its own directory, <root>/<org slug>/.
    const dir = path.join(roots, org.slug, name);
    makeRepo(dir, files);
    return dir;
  };
  const symbolNames = async (org: TestOrg, q: string): Promise<string[]> => {
    const res = await call(org, 'GET', `/v1/code/symbols?q=${encodeURIComponent(q)}`);
    expect(res.statusCode).toBe(200);
    return res.json<{ items: Array<{ name: string }> }>().items.map((s) => s.name);
  };

  beforeAll(async () => {
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-org-bytes-')));
    t = await createTestEngram({
      CODE_ALLOWED_ROOTS: roots,
      CODE_MAX_ORG_BYTES: String(MAX_ORG_BYTES),
      JOBS_MAX_ATTEMPTS: '5',
    });
    a = await t.makeOrg();
    b = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    rmSync(roots, { recursive: true, force: true });
  });

  it('fails, once, the run that would take the org over CODE_MAX_ORG_BYTES, keeping every index it had; other orgs are unaffected', async () => {
    const first = await index(a, repoDir(a, 'first', { 'a.ts': sourceOf('alphaFirst', 600) }));
    expect(first.repo.status).toBe('indexed');
    expect(first.job.state).toBe('succeeded');

    // 600 + 600 bytes: over the org's 1,000.
    const second = await index(a, repoDir(a, 'second', { 'b.ts': sourceOf('betaSecond', 600) }));
    expect(second.repo.status).toBe('failed');
    expect(second.repo.lastError).toMatch(
      /^QUOTA_EXCEEDED: Indexing the repository's 600 bytes .* take the org to 1200 bytes, .* 1000 \(CODE_MAX_ORG_BYTES\)/,
    );
    expect(second.repo.progress.parsed).toBe(0);
    expect(second.job.state).toBe('dead');
    expect(second.job.attempts).toBe(1);
    expect(await symbolNames(a, 'alphaFirst')).toEqual(['alphaFirst']);
    expect(await symbolNames(a, 'betaSecond')).toEqual([]);

    // A repository's own previous index does not count against its next run: 600 bytes again pass.
    expect((await reindex(a, first.repo.id)).repo.status).toBe('indexed');

    // Another org has its own budget.
    const other = await index(b, repoDir(b, 'other', { 'c.ts': sourceOf('gammaOther', 900) }));
    expect(other.repo.status).toBe('indexed');
    expect(other.job.state).toBe('succeeded');
    expect(await symbolNames(b, 'gammaOther')).toEqual(['gammaOther']);
  });

  it('leaves a repository’s previous index whole when its re-index would take the org over the quota', async () => {
    const dir = repoDir(b, 'growing', { 'd.ts': sourceOf('deltaOld', 100) });
    const { repo } = await index(b, dir);
    expect(repo.status).toBe('indexed');
    // 900 bytes in "other" + 100 here: exactly 1,000, allowed; grown to 200: over.
    writeFiles(dir, { 'd.ts': sourceOf('deltaNew', 200) });
    git(dir, 'commit', '-q', '-am', 'grow');
    const after = await reindex(b, repo.id);
    expect(after.repo.status).toBe('failed');
    expect(after.repo.lastError).toMatch(/^QUOTA_EXCEEDED: .*CODE_MAX_ORG_BYTES/);
    expect(after.job.state).toBe('dead');
    expect(after.job.attempts).toBe(1);
    expect(await symbolNames(b, 'deltaOld')).toEqual(['deltaOld']);
    expect(await symbolNames(b, 'deltaNew')).toEqual([]);
  });
});
