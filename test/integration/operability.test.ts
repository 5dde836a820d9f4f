import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeOpenAiEnv, startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Just enough of the Prometheus text format for assertions: one sample per non-comment line. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = l[2] ?? '';
    samples.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return samples;
}

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

const valueOf = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  find(samples, name, labels).reduce((sum, s) => sum + s.value, 0);

describe(`operability (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  const scrape = async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics', headers: org.auth });
    expect(res.statusCode).toBe(200);
    return parseMetrics(res.body);
  };

  beforeAll(async () => {
    t = await createTestEngram();
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  describe('GET /metrics', () => {
    it('needs credentials with ops:read unless METRICS_PUBLIC is set', async () => {
      const anonymous = await t.app.inject({ method: 'GET', url: '/metrics' });
      expect(anonymous.statusCode).toBe(401);
      const reader = await org.keyWith(['memories:read']);
      const tooNarrow = await t.app.inject({
        method: 'GET',
        url: '/metrics',
        headers: { authorization: `Bearer ${reader}` },
      });
      expect(tooNarrow.statusCode).toBe(403);
      const ops = await org.keyWith(['ops:read']);
      const ok = await t.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ops}` } });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(t.app.routeInventory.find((r) => r.url === '/metrics' && r.method === 'GET')).toMatchObject({
        scope: 'ops:read',
        public: false,
      });
    });

    it('counts requests by route template and status class, with duration buckets', async () => {
      const labels = { method: 'GET', route: '/v1/memories', status_class: '2xx' };
      const before = valueOf(await scrape(), 'engram_http_requests_total', labels);
      const list = await t.app.inject({ method: 'GET', url: '/v1/memories?limit=5', headers: org.auth });
      expect(list.statusCode).toBe(200);
      const missing = await t.app.inject({
        method: 'GET',
        url: '/v1/memories/01a2013f-67d9-747f-96d4-e8d35187ad10',
        headers: org.auth,
      });
      expect(missing.statusCode).toBe(404);
      await t.app.inject({ method: 'GET', url: '/no/such/path' });

      const after = await scrape();
      expect(valueOf(after, 'engram_http_requests_total', labels)).toBe(before + 1);
      // The template, never the raw URL: ids must not create series.
      expect(
        valueOf(after, 'engram_http_requests_total', { route: '/v1/memories/:id', status_class: '4xx' }),
      ).toBeGreaterThanOrEqual(1);
      expect(find(after, 'engram_http_requests_total').some((s) => s.labels.route?.includes('01a2013f'))).toBe(false);
      expect(valueOf(after, 'engram_http_requests_total', { route: 'unmatched', status_class: '4xx' })).toBe(1);

      const buckets = find(after, 'engram_http_request_duration_seconds_bucket', {
        method: 'GET',
        route: '/v1/memories',
      });
      expect(buckets.map((b) => b.labels.le)).toEqual(expect.arrayContaining(['0.005', '1', '+Inf']));
      expect(
        valueOf(after, 'engram_http_request_duration_seconds_count', { method: 'GET', route: '/v1/memories' }),
      ).toBe(before + 1);
    });

    it('exposes embedder, cache, pool, rate-limit, audit and process series', async () => {
      const before = await scrape();
      await t.engram.memories.remember(org.ctx, { content: `metrics probe ${Date.now()}` });
      await t.engram.embedder.embed(['repeat me']);
      await t.engram.embedder.embed(['repeat me']);
      t.engram.metrics.rateLimitRejections.inc({ class: 'test' });
      const s = await scrape();

      expect(find(s, 'engram_embedder_breaker_state', { provider: 'builtin' })[0]?.value).toBe(0);
      expect(valueOf(s, 'engram_embedder_batch_size_count')).toBeGreaterThan(
        valueOf(before, 'engram_embedder_batch_size_count'),
      );
      const hits = (x: Sample[]) => valueOf(x, 'engram_cache_requests_total', { cache: 'embedding', result: 'hit' });
      const misses = (x: Sample[]) => valueOf(x, 'engram_cache_requests_total', { cache: 'embedding', result: 'miss' });
      expect(hits(s)).toBeGreaterThanOrEqual(hits(before) + 1);
      expect(misses(s)).toBeGreaterThanOrEqual(misses(before) + 1);
      expect(find(s, 'engram_db_pool_connections', { state: 'total' })[0]?.value).toBeGreaterThanOrEqual(1);
      expect(find(s, 'engram_db_pool_connections', { state: 'waiting' })).toHaveLength(1);
      expect(valueOf(s, 'engram_rate_limit_rejections_total', { class: 'test' })).toBe(1);
      expect(find(s, 'engram_audit_append_failures_total')).toHaveLength(1);
      expect(find(s, 'engram_process_cpu_user_seconds_total')).toHaveLength(1);
      expect(find(s, 'engram_nodejs_eventloop_lag_seconds')).toHaveLength(1);
    });

    it('counts audit entries that could not be written', async () => {
      const before = valueOf(await scrape(), 'engram_audit_append_failures_total');
      await expect(
        t.engram.audit.record({
          orgId: 'not-an-org-id',
          actorType: 'system',
          actorId: null,
          authMethod: null,
          action: 'test.fail',
          resourceType: null,
          resourceId: null,
          outcome: 'success',
          status: null,
          ip: null,
          userAgent: null,
          requestId: null,
          details: {},
        }),
      ).rejects.toThrow();
      expect(valueOf(await scrape(), 'engram_audit_append_failures_total')).toBe(before + 1);
    });
  });

  describe('GET /health/deps', () => {
    it('gives anyone a summary without details', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/health/deps' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        status: 'up',
        deps: { store: 'up', embedder: 'up', ...(backend === 'postgres' ? { valkey: 'up' } : {}) },
      });
    });

    it('shows latency and the embedder circuit only to ops:read', async () => {
      expect((await t.app.inject({ method: 'GET', url: '/health/deps/detail' })).statusCode).toBe(401);
      const reader = await org.keyWith(['memories:read']);
      const denied = await t.app.inject({
        method: 'GET',
        url: '/health/deps/detail',
        headers: { authorization: `Bearer ${reader}` },
      });
      expect(denied.statusCode).toBe(403);

      const res = await t.app.inject({ method: 'GET', url: '/health/deps/detail', headers: org.auth });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.status).toBe('up');
      expect(body.deps.store).toMatchObject({ status: 'up', latencyMs: expect.any(Number) });
      expect(body.deps.embedder).toMatchObject({
        status: 'up',
        details: { provider: 'builtin', breaker: 'closed' },
      });
      if (backend === 'postgres') expect(body.deps.valkey.status).toBe('up');
      // The store probe is reused for a few seconds: a public endpoint must not hammer the store.
      const again = (await t.app.inject({ method: 'GET', url: '/health/deps/detail', headers: org.auth })).json();
      expect(again.deps.store).toEqual(body.deps.store);
    });

    it('keeps /health/live and /health/ready as they were', async () => {
      expect((await t.app.inject({ method: 'GET', url: '/health/live' })).json()).toEqual({ status: 'live' });
      const ready = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json().status).toBe('ready');
    });
  });
});

describe(`operability with METRICS_PUBLIC=true (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram({ METRICS_PUBLIC: 'true' });
  });
  afterAll(async () => t.close());

  it('serves /metrics without credentials', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(find(parseMetrics(res.body), 'engram_embedder_breaker_state')).toHaveLength(1);
  });
});

describe(`operability with a failing embedder (${backend})`, () => {
  let fake: FakeOpenAi;
  let t: TestEngram;
  let org: TestOrg;

  beforeAll(async () => {
    fake = await startFakeOpenAi(64);
    t = await createTestEngram(
      fakeOpenAiEnv(fake, {
        EMBEDDING_BREAKER_THRESHOLD: '3',
        EMBEDDING_BREAKER_HALF_OPEN_MS: '60000',
      }),
    );
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  const detail = async () =>
    (await t.app.inject({ method: 'GET', url: '/health/deps/detail', headers: org.auth })).json();

  it('reports the embedder degraded, then down with an open circuit, without calling it', async () => {
    await t.engram.memories.remember(org.ctx, { content: 'embedded while the provider is up' });
    expect((await detail()).deps.embedder.status).toBe('up');

    fake.down(true);
    await t.engram.memories.remember(org.ctx, { content: 'first failure' });
    const degraded = await detail();
    expect(degraded.status).toBe('degraded');
    expect(degraded.deps.embedder).toMatchObject({
      status: 'degraded',
      details: { breaker: 'closed', lastFailureAt: expect.any(String), lastError: expect.stringContaining('503') },
    });

    for (let i = 0; i < 3; i++) await t.engram.memories.remember(org.ctx, { content: `failure ${i}` });
    expect(t.engram.embedder.breakerState).toBe('open');
    const callsBefore = fake.calls;
    const down = await detail();
    const summary = await t.app.inject({ method: 'GET', url: '/health/deps' });
    expect(fake.calls).toBe(callsBefore);

    expect(down.status).toBe('degraded');
    expect(down.deps.store.status).toBe('up');
    expect(down.deps.embedder).toMatchObject({ status: 'down', details: { provider: 'openai', breaker: 'open' } });
    expect(summary.statusCode).toBe(200);
    expect(summary.json().deps.embedder).toBe('down');
    expect(JSON.stringify(summary.json())).not.toContain('503');

    const metrics = parseMetrics((await t.app.inject({ method: 'GET', url: '/metrics', headers: org.auth })).body);
    expect(find(metrics, 'engram_embedder_breaker_state', { provider: 'openai' })[0]?.value).toBe(2);
  });
});
