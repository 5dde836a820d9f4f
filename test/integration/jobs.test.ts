import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildCli } from '../../src/cli/main.ts';
import type { Job } from '../../src/domain/jobs/job.types.ts';
import { backoffMs, JobWorker } from '../../src/domain/jobs/job.worker.ts';
import { PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';
import { fakeOpenAiEnv, startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface JobJson {
  id: string;
  kind: string;
  payload: { memoryId?: string };
  state: string;
  attempts: number;
  maxAttempts: number;
  runAt: string;
  lastError: string | null;
  updatedAt: string;
}

interface Hit {
  memory: { id: string };
  signals: { lexical?: unknown; vector?: unknown };
}

describe(`background jobs (${backend})`, () => {
  let fake: FakeOpenAi;
  let t: TestEngram;
  let n = 0;
  /** Content never embedded before, so no cached vector can stand in for the provider. */
  const fresh = (words: string) => `${words} #${++n} ${Date.now().toString(36)}`;

  const jobsOf = async (org: TestOrg, query = ''): Promise<JobJson[]> => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/jobs${query}`, headers: org.auth });
    expect(res.statusCode).toBe(200);
    return res.json<{ items: JobJson[] }>().items;
  };
  const jobOf = async (org: TestOrg, id: string): Promise<JobJson> => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: org.auth });
    expect(res.statusCode).toBe(200);
    return res.json<JobJson>();
  };
  const embedJobFor = async (org: TestOrg, memoryId: string): Promise<JobJson> => {
    const found = (await jobsOf(org, '?kind=embed_memory')).filter((j) => j.payload.memoryId === memoryId);
    expect(found).toHaveLength(1);
    return found[0] as JobJson;
  };
  /** Lets time pass for one job: its backoff is over (a test never waits for the clock). */
  const makeDue = (id: string) =>
    sql`UPDATE jobs SET run_at = now() WHERE id = ${id}`.execute(t.engram.database.adminDb);
  const search = (org: TestOrg, payload: object) =>
    t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: org.auth, payload });

  beforeAll(async () => {
    fake = await startFakeOpenAi(64);
    t = await createTestEngram(
      fakeOpenAiEnv(fake, {
        // The circuit never opens here, so "embedder back" takes effect at once.
        EMBEDDING_BREAKER_THRESHOLD: '1000',
        JOBS_MAX_ATTEMPTS: '3',
        // Retries are far in the future unless a test makes a job due.
        JOBS_BACKOFF_BASE_MS: '600000',
        JOBS_BACKOFF_MAX_MS: '3600000',
      }),
    );
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it('enqueues the embed job in the same transaction as the memory write', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const written = await t.engram.memories.remember(org.ctx, { content: fresh('the deploy freeze starts friday') });
    fake.down(false);
    expect(written).toMatchObject({ created: true, embedded: false });
    const job = await embedJobFor(org, written.memory.id);
    expect(job).toMatchObject({ kind: 'embed_memory', state: 'queued', attempts: 0, maxAttempts: 3 });

    // A duplicate write stores nothing and enqueues nothing.
    fake.down(true);
    const again = await t.engram.memories.remember(org.ctx, { content: written.memory.content });
    fake.down(false);
    expect(again.created).toBe(false);
    expect(await jobsOf(org)).toHaveLength(1);

    // A transaction that fails after enqueuing leaves neither the memory nor the job.
    const tenantDb = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
    await expect(
      tenantDb.withTenant(org.orgId, async ({ memories, jobs }) => {
        await memories.insertMemory({
          id: '01990000-0000-7000-8000-000000000001',
          scope: {},
          scopeKey: 'rolled-back',
          content: 'never stored',
          contentHash: 'h',
          metadata: {},
          tags: [],
          source: null,
          validFrom: null,
          validTo: null,
        });
        await jobs.insertJob({
          id: '01990000-0000-7000-8000-000000000002',
          kind: 'embed_memory',
          payload: { memoryId: '01990000-0000-7000-8000-000000000001' },
          maxAttempts: 3,
        });
        throw new Error('the write failed');
      }),
    ).rejects.toThrow('the write failed');
    expect(await jobsOf(org)).toHaveLength(1);
    const lookup = await t.app.inject({
      method: 'GET',
      url: '/v1/memories/01990000-0000-7000-8000-000000000001',
      headers: org.auth,
    });
    expect(lookup.statusCode).toBe(404);

    await t.engram.worker.drain();
    expect((await jobOf(org, job.id)).state).toBe('succeeded');
  });

  it('makes a memory written while the embedder is down searchable lexically at once and by vector once its job succeeds', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const content = fresh('quarantined flaky integration tests');
    const { memory } = await t.engram.memories.remember(org.ctx, { content });

    const hybrid = await search(org, { query: 'quarantined flaky integration' });
    expect(hybrid.statusCode).toBe(200);
    expect(hybrid.json().degraded).toEqual(['vector']);
    expect(hybrid.json().results[0].memory.id).toBe(memory.id);

    // First run fails: queued again, later, with the error recorded.
    const job = await embedJobFor(org, memory.id);
    await t.engram.worker.runOnce();
    const failed = await jobOf(org, job.id);
    expect(failed).toMatchObject({ state: 'queued', attempts: 1 });
    expect(failed.lastError).toMatch(/^EMBEDDER_UNAVAILABLE: /);
    expect(new Date(failed.runAt).getTime()).toBeGreaterThan(new Date(failed.updatedAt).getTime());

    // Not due during its backoff, even with the embedder back.
    fake.down(false);
    await t.engram.worker.runOnce();
    expect(await jobOf(org, job.id)).toMatchObject({ state: 'queued', attempts: 1 });

    await makeDue(job.id);
    await t.engram.worker.runOnce();
    expect(await jobOf(org, job.id)).toMatchObject({ state: 'succeeded', attempts: 2 });

    const vector = await search(org, { query: content, mode: 'vector', limit: 1 });
    expect(vector.statusCode).toBe(200);
    const top = vector.json<{ results: Hit[] }>().results[0];
    expect(top?.memory.id).toBe(memory.id);
    expect(top?.signals.vector).toBeDefined();
  });

  it('enqueues a job when an edit cannot be embedded, and ignores content that changed since', async () => {
    const org = await t.makeOrg();
    const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh('kubernetes autoscaler') });
    fake.down(true);
    await t.engram.memories.update(org.ctx, memory.id, { content: fresh('terraform module registry') });
    const job = await embedJobFor(org, memory.id);
    fake.down(false);
    // A later edit embeds fine: the older job finds other content and leaves the new vector alone.
    const latest = fresh('helm chart repository');
    await t.engram.memories.update(org.ctx, memory.id, { content: latest });
    await makeDue(job.id);
    await t.engram.worker.drain();
    expect((await jobOf(org, job.id)).state).toBe('succeeded');
    const hit = await search(org, { query: latest, mode: 'vector', limit: 1 });
    expect(hit.json().results[0].memory.id).toBe(memory.id);
  });

  it('succeeds without work when the memory was deleted', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh('short lived note') });
    fake.down(false);
    const job = await embedJobFor(org, memory.id);
    await t.engram.memories.forget(org.ctx, memory.id);
    const calls = fake.calls;
    await t.engram.worker.drain();
    expect((await jobOf(org, job.id)).state).toBe('succeeded');
    expect(fake.calls).toBe(calls);
  });

  it('moves a job to the dead letter after max attempts; the API lists and re-drives it', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const content = fresh('the dead letter queue keeps failed work');
    const { memory } = await t.engram.memories.remember(org.ctx, { content });
    const job = await embedJobFor(org, memory.id);
    for (let attempt = 1; attempt <= 3; attempt++) {
      await makeDue(job.id);
      await t.engram.worker.runOnce();
      expect((await jobOf(org, job.id)).attempts).toBe(attempt);
    }
    const dead = await jobOf(org, job.id);
    expect(dead.state).toBe('dead');
    expect(dead.lastError).toMatch(/EMBEDDER_UNAVAILABLE/);
    expect((await jobsOf(org, '?state=dead')).map((j) => j.id)).toEqual([job.id]);
    expect(await jobsOf(org, '?state=queued')).toEqual([]);

    fake.down(false);
    const retry = await t.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/retry`, headers: org.auth });
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toMatchObject({ id: job.id, state: 'queued', attempts: 0 });
    await t.engram.worker.drain();
    expect(await jobOf(org, job.id)).toMatchObject({ state: 'succeeded', attempts: 1 });
    const hit = await search(org, { query: content, mode: 'vector', limit: 1 });
    expect(hit.json().results[0].memory.id).toBe(memory.id);

    const twice = await t.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/retry`, headers: org.auth });
    expect(twice.statusCode).toBe(409);
    expect(twice.json().error.code).toBe('CONFLICT');
  });

  it('re-drives every dead job at once', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const ids: string[] = [];
    for (const words of ['first dead note', 'second dead note']) {
      const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh(words) });
      ids.push((await embedJobFor(org, memory.id)).id);
    }
    await sql`UPDATE jobs SET max_attempts = 1 WHERE id = ANY(${ids}::uuid[])`.execute(t.engram.database.adminDb);
    await t.engram.worker.drain();
    expect((await jobsOf(org, '?state=dead')).map((j) => j.id).sort()).toEqual([...ids].sort());
    fake.down(false);

    const bad = await t.app.inject({
      method: 'POST',
      url: '/v1/jobs/retry',
      headers: org.auth,
      payload: { state: 'queued' },
    });
    expect(bad.statusCode).toBe(400);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/jobs/retry',
      headers: org.auth,
      payload: { state: 'dead', kind: 'embed_memory' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ requeued: 2 });
    await t.engram.worker.drain();
    expect((await jobsOf(org, '?state=succeeded')).map((j) => j.id).sort()).toEqual([...ids].sort());
  });

  it('does not show or re-drive a job of another org (404), and needs the jobs scopes', async () => {
    const owner = await t.makeOrg();
    const other = await t.makeOrg();
    fake.down(true);
    const { memory } = await t.engram.memories.remember(owner.ctx, { content: fresh('private to the owner') });
    const job = await embedJobFor(owner, memory.id);
    await sql`UPDATE jobs SET max_attempts = 1 WHERE id = ${job.id}`.execute(t.engram.database.adminDb);
    await t.engram.worker.drain();
    fake.down(false);
    expect((await jobOf(owner, job.id)).state).toBe('dead');

    const get = await t.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: other.auth });
    expect(get.statusCode).toBe(404);
    expect(get.json().error.code).toBe('NOT_FOUND');
    const retry = await t.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/retry`, headers: other.auth });
    expect(retry.statusCode).toBe(404);
    expect(await jobsOf(other, '?state=dead')).toEqual([]);
    const bulk = await t.app.inject({
      method: 'POST',
      url: '/v1/jobs/retry',
      headers: other.auth,
      payload: { state: 'dead' },
    });
    expect(bulk.json()).toEqual({ requeued: 0 });
    expect((await jobOf(owner, job.id)).state).toBe('dead');

    const readOnly = await owner.keyWith(['jobs:read']);
    const denied = await t.app.inject({
      method: 'POST',
      url: `/v1/jobs/${job.id}/retry`,
      headers: { authorization: `Bearer ${readOnly}` },
    });
    expect(denied.statusCode).toBe(403);
    const memoriesOnly = await owner.keyWith(['memories:read']);
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/jobs',
      headers: { authorization: `Bearer ${memoriesOnly}` },
    });
    expect(list.statusCode).toBe(403);
  });

  it('reclaims a job whose worker crashed once its lease expired', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh('lease expiry reclaim') });
    fake.down(false);
    const job = await embedJobFor(org, memory.id);
    const claimed = await t.engram.jobQueue.claim({
      workerId: 'crashed-worker',
      limit: 100,
      leaseMs: 3_600_000,
      kinds: ['embed_memory'],
    });
    expect(claimed.map((j) => j.id)).toContain(job.id);
    expect(await jobOf(org, job.id)).toMatchObject({ state: 'running', attempts: 1 });

    // While the lease holds, nobody else takes the job.
    await t.engram.worker.runOnce();
    expect((await jobOf(org, job.id)).state).toBe('running');

    // The crashed worker never comes back; its lease runs out.
    await sql`UPDATE jobs SET locked_until = now() - interval '1 second' WHERE locked_by = 'crashed-worker'`.execute(
      t.engram.database.adminDb,
    );
    await t.engram.worker.drain();
    const done = await jobOf(org, job.id);
    expect(done).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect(done.lastError).toMatch(/lease expired/);
    // A stalled worker that wakes up cannot overwrite the outcome.
    expect(await t.engram.jobQueue.complete({ orgId: org.orgId, id: job.id }, 'crashed-worker')).toBe(false);
    expect(await t.engram.jobQueue.fail({ orgId: org.orgId, id: job.id }, 'crashed-worker', 'late', 0)).toBeUndefined();
  });

  it('never hands one job to two workers claiming at the same time', async () => {
    const org = await t.makeOrg();
    const tenantDb = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
    const ids = await tenantDb.withTenant(org.orgId, async ({ jobs }) => {
      const out: string[] = [];
      for (let i = 0; i < 6; i++) {
        out.push(
          (await jobs.insertJob({ id: crypto.randomUUID(), kind: 'test_claim', payload: {}, maxAttempts: 1 })).id,
        );
      }
      return out;
    });
    const claim = (workerId: string) =>
      t.engram.jobQueue.claim({ workerId, limit: 4, leaseMs: 3_600_000, kinds: ['test_claim'] });
    const [a, b] = await Promise.all([claim('claimer-a'), claim('claimer-b')]);
    const got = [...(a ?? []), ...(b ?? [])].map((j) => j.id);
    expect(new Set(got).size).toBe(got.length);
    expect(got.sort()).toEqual([...ids].sort());
    expect(a?.every((j) => j.lockedBy === 'claimer-a' && j.state === 'running' && j.attempts === 1)).toBe(true);
  });

  describe('fair claiming across orgs', () => {
    /** A kind of its own per test, so no other test's jobs are claimed with these. */
    const kindFor = () => `test_fair_${++n}`;
    const tenantDb = () => new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
    /** Queues `count` jobs of `kind` for `org` in one transaction; returns their ids, oldest first. */
    const enqueue = (org: TestOrg, kind: string, count: number): Promise<string[]> =>
      tenantDb().withTenant(org.orgId, async ({ jobs }) => {
        const batch = Array.from({ length: count }, () => ({ id: uuidv7(), kind, payload: {}, maxAttempts: 3 }));
        await jobs.insertJobs(batch);
        return batch.map((j) => j.id);
      });
    const claim = (workerId: string, kind: string, limit: number, maxRunningPerOrg?: number) =>
      t.engram.jobQueue.claim({ workerId, limit, leaseMs: 3_600_000, kinds: [kind], maxRunningPerOrg });
    const ids = (jobs: Job[]) => jobs.map((j) => j.id);

    it('gives a free slot to another org before the 50 jobs one org queued earlier', async () => {
      const kind = kindFor();
      const [a, b] = [await t.makeOrg(), await t.makeOrg()];
      const aJobs = await enqueue(a, kind, 50);
      const [bJob] = await enqueue(b, kind, 1);
      // One slot frees at a time: A's oldest first (both orgs run nothing), then B's (A now runs one).
      expect(ids(await claim('fair-1', kind, 1))).toEqual([aJobs[0]]);
      expect(ids(await claim('fair-2', kind, 1))).toEqual([bJob]);
      expect(ids(await claim('fair-3', kind, 1))).toEqual([aJobs[1]]);
    });

    it('claims round-robin by org within one claim, oldest first within an org', async () => {
      const kind = kindFor();
      const [a, b, c] = [await t.makeOrg(), await t.makeOrg(), await t.makeOrg()];
      const aJobs = await enqueue(a, kind, 50);
      const bJobs = await enqueue(b, kind, 1);
      const cJobs = await enqueue(c, kind, 2);
      const got = await claim('fair-rr', kind, 4);
      expect(ids(got)).toEqual([aJobs[0], bJobs[0], cJobs[0], aJobs[1]]);
      expect(got.every((j) => j.state === 'running' && j.lockedBy === 'fair-rr' && j.attempts === 1)).toBe(true);
    });

    it('never runs more of one org’s jobs at once than the per-org cap, across workers', async () => {
      const kind = kindFor();
      const [a, b] = [await t.makeOrg(), await t.makeOrg()];
      const aJobs = await enqueue(a, kind, 50);
      const first = await claim('cap-1', kind, 5, 2);
      expect(ids(first)).toEqual(aJobs.slice(0, 2));
      // Another worker with free slots finds A at its cap: nothing to claim, however many A queued.
      expect(await claim('cap-2', kind, 5, 2)).toEqual([]);
      // B is not held back by A.
      const [bJob] = await enqueue(b, kind, 1);
      expect(ids(await claim('cap-2', kind, 5, 2))).toEqual([bJob]);
      // When one of A's runs ends, A gets one slot back.
      expect(await t.engram.jobQueue.complete(first[0] as Job, 'cap-1')).toBe(true);
      expect(ids(await claim('cap-2', kind, 5, 2))).toEqual([aJobs[2]]);
      // Without a cap, the rest of A's due jobs are claimable.
      expect(await claim('cap-3', kind, 5)).toHaveLength(5);
    });

    it('holds the cap when two workers claim one org’s jobs of different kinds at the same time', async () => {
      // Each worker alone would pick two jobs of its kind; only taking turns keeps the sum at the cap.
      const [k1, k2] = [kindFor(), kindFor()];
      const a = await t.makeOrg();
      await enqueue(a, k1, 10);
      await enqueue(a, k2, 10);
      for (let round = 0; round < 5; round++) {
        const [x, y] = await Promise.all([claim(`race-x-${round}`, k1, 5, 2), claim(`race-y-${round}`, k2, 5, 2)]);
        const got = [...(x ?? []), ...(y ?? [])];
        expect(got).toHaveLength(2);
        await Promise.all(got.map((j) => t.engram.jobQueue.complete(j, j.lockedBy ?? '')));
      }
    });

    it('runs no more of one org’s jobs per round than the worker’s per-org cap', async () => {
      const kind = kindFor();
      const a = await t.makeOrg();
      await enqueue(a, kind, 3);
      const worker = new JobWorker({
        queue: t.engram.jobQueue,
        handlers: new Map([[kind, async () => undefined]]),
        workerId: `cap-worker-${++n}`,
        concurrency: 2,
        maxRunningPerOrg: 1,
        pollMs: 10,
        leaseMs: 3_600_000,
        backoff: { baseMs: 600_000, maxMs: 600_000 },
        retentionMs: 3_600_000,
      });
      expect(await worker.runOnce()).toBe(1);
      expect(await worker.drain()).toBe(2);
    });
  });

  it('lists and re-drives dead jobs from the CLI, through the server', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh('cli dead letter') });
    const job = await embedJobFor(org, memory.id);
    await sql`UPDATE jobs SET max_attempts = 1 WHERE id = ${job.id}`.execute(t.engram.database.adminDb);
    await makeDue(job.id);
    await t.engram.worker.drain();
    fake.down(false);
    expect((await jobOf(org, job.id)).state).toBe('dead');

    const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const saved = { url: process.env.ENGRAM_URL, key: process.env.ENGRAM_API_KEY };
    process.env.ENGRAM_URL = url;
    process.env.ENGRAM_API_KEY = org.key;
    let printed = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      printed += String(chunk);
      return true;
    });
    const cli = (...args: string[]) => buildCli().exitOverride().parseAsync(args, { from: 'user' });
    try {
      await cli('jobs', 'list', '--state', 'dead', '--json');
      expect((JSON.parse(printed) as JobJson[]).map((j) => j.id)).toEqual([job.id]);
      printed = '';
      await cli('jobs', 'retry', job.id);
      expect(printed).toBe(`re-driven ${job.id} (embed_memory): queued\n`);
      printed = '';
      await cli('jobs', 'list', '--state', 'queued');
      expect(printed).toMatch(new RegExp(`^${job.id}\\s+queued\\s+embed_memory\\s+0/1\\s+EMBEDDER_UNAVAILABLE`));
      await expect(cli('jobs', 'retry')).rejects.toThrow(/name a job id, or pass --all-dead/);
      await expect(cli('jobs', 'retry', job.id)).rejects.toMatchObject({ code: 'CONFLICT' });
    } finally {
      spy.mockRestore();
      process.env.ENGRAM_URL = saved.url;
      process.env.ENGRAM_API_KEY = saved.key;
      if (saved.url === undefined) delete process.env.ENGRAM_URL;
      if (saved.key === undefined) delete process.env.ENGRAM_API_KEY;
    }
    await t.engram.worker.drain();
    expect((await jobOf(org, job.id)).state).toBe('succeeded');
  });

  describe('worker stop', () => {
    const blockKind = 'test_block';
    let releaseHandler: () => void = () => undefined;
    let started: Promise<void>;
    let org: TestOrg;

    const blockingWorker = (leaseMs = 3_600_000) => {
      let signalStarted: () => void = () => undefined;
      started = new Promise((r) => (signalStarted = r));
      const gate = new Promise<void>((r) => (releaseHandler = r));
      return new JobWorker({
        queue: t.engram.jobQueue,
        handlers: new Map([
          [
            blockKind,
            async () => {
              signalStarted();
              await gate;
            },
          ],
        ]),
        workerId: `stop-test-${++n}`,
        concurrency: 1,
        pollMs: 10,
        leaseMs,
        backoff: { baseMs: 600_000, maxMs: 600_000 },
        retentionMs: 3_600_000,
      });
    };
    const enqueueBlocking = async (): Promise<Job> => {
      const tenantDb = new PgTenantDb(t.engram.database.db, { canActAsSystem: false });
      return tenantDb.withTenant(org.orgId, ({ jobs }) =>
        jobs.insertJob({ id: crypto.randomUUID(), kind: blockKind, payload: {}, maxAttempts: 3 }),
      );
    };

    beforeAll(async () => {
      org = await t.makeOrg();
    });

    it('claims nothing of a paused kind, and its jobs keep their attempts', async () => {
      const job = await enqueueBlocking();
      let paused = true;
      const worker = new JobWorker({
        queue: t.engram.jobQueue,
        handlers: new Map([[blockKind, async () => undefined]]),
        workerId: `pause-test-${++n}`,
        concurrency: 1,
        pollMs: 10,
        leaseMs: 3_600_000,
        backoff: { baseMs: 600_000, maxMs: 600_000 },
        retentionMs: 3_600_000,
        isPaused: () => paused,
      });
      expect(await worker.runOnce()).toBe(0);
      expect(await jobOf(org, job.id)).toMatchObject({ state: 'queued', attempts: 0 });
      paused = false;
      expect(await worker.drain()).toBe(1);
      expect(await jobOf(org, job.id)).toMatchObject({ state: 'succeeded', attempts: 1 });
    });

    it('renews the lease of a run that outlasts it, so no other worker takes the job over', async () => {
      const job = await enqueueBlocking();
      const worker = blockingWorker(1_000);
      worker.start();
      await started;
      // Three leases long: without renewal the next claim would take the job back as expired.
      await new Promise((r) => setTimeout(r, 3_000));
      const other = await t.engram.jobQueue.claim({
        workerId: `other-${++n}`,
        limit: 10,
        leaseMs: 1_000,
        kinds: [blockKind],
      });
      expect(other.map((j) => j.id)).not.toContain(job.id);
      expect(await jobOf(org, job.id)).toMatchObject({ state: 'running', attempts: 1 });
      releaseHandler();
      await worker.stop(60_000);
      expect(await jobOf(org, job.id)).toMatchObject({ state: 'succeeded', attempts: 1 });
    });

    it('waits for the running job before it returns', async () => {
      const job = await enqueueBlocking();
      const worker = blockingWorker();
      worker.start();
      await started;
      let stopped = false;
      const stopping = worker.stop(3_600_000).then((r) => {
        stopped = true;
        return r;
      });
      await new Promise((r) => setImmediate(r));
      expect(stopped).toBe(false);
      expect((await jobOf(org, job.id)).state).toBe('running');
      releaseHandler();
      expect(await stopping).toEqual({ released: 0 });
      expect((await jobOf(org, job.id)).state).toBe('succeeded');
    });

    it('returns the lease of a job still running at the deadline to the queue', async () => {
      const job = await enqueueBlocking();
      const worker = blockingWorker();
      worker.start();
      await started;
      expect(await worker.stop(1)).toEqual({ released: 1 });
      const released = await jobOf(org, job.id);
      expect(released).toMatchObject({ state: 'queued', attempts: 0 });
      // The interrupted run finishing late changes nothing.
      releaseHandler();
      expect(await worker.stop(3_600_000)).toEqual({ released: 0 });
      expect(await jobOf(org, job.id)).toMatchObject({ state: 'queued', attempts: 0 });
    });
  });

  it('reports queue depth, oldest age and processed runs in /metrics', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    await t.engram.memories.remember(org.ctx, { content: fresh('metrics of the queue') });
    fake.down(false);
    const res = await t.app.inject({ method: 'GET', url: '/metrics', headers: org.auth });
    expect(res.statusCode).toBe(200);
    const value = (series: string): number => {
      const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
      expect(line, series).toBeDefined();
      return Number(line?.split(' ')[1]);
    };
    expect(value('engram_jobs_depth{kind="embed_memory",state="queued"}')).toBeGreaterThanOrEqual(1);
    expect(value('engram_jobs_depth{kind="embed_memory",state="dead"}')).toBeGreaterThanOrEqual(1);
    expect(value('engram_jobs_depth{kind="embed_memory",state="succeeded"}')).toBeGreaterThanOrEqual(1);
    expect(value('engram_jobs_oldest_age_seconds{kind="embed_memory"}')).toBeGreaterThanOrEqual(0);
    expect(value('engram_jobs_processed_total{kind="embed_memory",result="succeeded"}')).toBeGreaterThanOrEqual(1);
    expect(value('engram_jobs_processed_total{kind="embed_memory",result="retried"}')).toBeGreaterThanOrEqual(1);
    expect(value('engram_jobs_processed_total{kind="embed_memory",result="dead"}')).toBeGreaterThanOrEqual(1);
  });

  it('prunes succeeded jobs after the retention period, never dead ones', async () => {
    const org = await t.makeOrg();
    fake.down(true);
    const kept = await t.engram.memories.remember(org.ctx, { content: fresh('retention keeps the dead') });
    const { memory } = await t.engram.memories.remember(org.ctx, { content: fresh('retention of finished jobs') });
    const dead = await embedJobFor(org, kept.memory.id);
    await sql`UPDATE jobs SET max_attempts = 1 WHERE id = ${dead.id}`.execute(t.engram.database.adminDb);
    await t.engram.worker.drain();
    expect((await jobOf(org, dead.id)).state).toBe('dead');
    fake.down(false);
    const job = await embedJobFor(org, memory.id);
    await makeDue(job.id);
    await t.engram.worker.drain();
    expect((await jobOf(org, job.id)).state).toBe('succeeded');
    await sql`UPDATE jobs SET finished_at = now() - interval '400 days' WHERE id = ANY(${[job.id, dead.id]}::uuid[])`.execute(
      t.engram.database.adminDb,
    );
    expect(await t.engram.worker.prune()).toBeGreaterThanOrEqual(1);
    const gone = await t.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: org.auth });
    expect(gone.statusCode).toBe(404);
    expect((await jobOf(org, dead.id)).state).toBe('dead');
  });
});

describe('backoffMs', () => {
  it('doubles per attempt up to the cap, with up to half of it random', () => {
    const opts = { baseMs: 1_000, maxMs: 10_000 };
    expect([1, 2, 3, 4, 5].map((a) => backoffMs(a, opts, () => 1))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000]);
    expect([1, 2, 3, 4, 5].map((a) => backoffMs(a, opts, () => 0))).toEqual([500, 1_000, 2_000, 4_000, 5_000]);
  });
});
