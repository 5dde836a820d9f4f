import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactedSummary } from '../../src/config/config.ts';
import { createLogger } from '../../src/main.ts';
import { startTracing } from '../../src/ops/tracing.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { backend, createTestEngram, testConfig, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const traceparent = (traceId: string, parentId: string, sampled: boolean) =>
  `00-${traceId}-${parentId}-${sampled ? '01' : '00'}`;

/** Flushes until `done` holds: a span ends in `onResponse`, which may run just after the client has its answer. */
async function flushUntil(t: TestEngram, receiver: OtlpReceiver, done: (spans: readonly ReceivedSpan[]) => boolean) {
  for (let i = 0; i < 100 && !done(receiver.spans); i++) {
    await t.engram.tracing.forceFlush();
    if (!done(receiver.spans)) await new Promise((r) => setTimeout(r, 20));
  }
  return receiver.spans;
}

/** Every span of `traceId` under `root` (its descendants, at any depth). */
function descendants(spans: readonly ReceivedSpan[], root: ReceivedSpan): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  const parents = new Set([root.spanId]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of spans) {
      if (s.traceId === root.traceId && parents.has(s.parentSpanId) && !parents.has(s.spanId)) {
        parents.add(s.spanId);
        out.push(s);
        grew = true;
      }
    }
  }
  return out;
}

describe(`tracing (${backend})`, () => {
  let receiver: OtlpReceiver;
  let t: TestEngram;
  let org: TestOrg;
  let url: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    t = await createTestEngram({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'engram-test' });
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('continues the caller’s trace with HTTP, SQL, cache and embedder spans, without content or parameters', async () => {
    const traceId = hex(16);
    const parentId = hex(8);
    const secret = `tracing-canary-${hex(6)}`;
    const query = `whereabouts-${hex(6)}`;
    const headers = {
      ...org.auth,
      'content-type': 'application/json',
      traceparent: traceparent(traceId, parentId, true),
      tracestate: 'vendor=1',
    };
    const created = await fetch(`${url}/v1/memories`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ content: `The ${secret} lives in the attic` }),
    });
    expect(created.status).toBe(201);
    const found = await fetch(`${url}/v1/memories/search`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, mode: 'hybrid' }),
    });
    expect(found.status).toBe(200);

    const isServer = (s: ReceivedSpan, name: string) => s.traceId === traceId && s.kind === SERVER && s.name === name;
    const spans = await flushUntil(
      t,
      receiver,
      (all) =>
        all.some((s) => isServer(s, 'POST /v1/memories')) && all.some((s) => isServer(s, 'POST /v1/memories/search')),
    );
    const create = spans.find((s) => isServer(s, 'POST /v1/memories'));
    const search = spans.find((s) => isServer(s, 'POST /v1/memories/search'));
    if (create === undefined || search === undefined) throw new Error('server spans missing');

    // The incoming traceparent is the parent of both server spans.
    expect(create.parentSpanId).toBe(parentId);
    expect(search.parentSpanId).toBe(parentId);
    expect(create.service).toBe('engram-test');
    expect(create.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/memories',
      'http.response.status_code': 201,
      'engram.org_id': org.orgId,
    });
    expect(create.status).not.toBe(ERROR);

    // SQL nests under the request: authentication, the insert, the audit entry.
    const underCreate = descendants(spans, create);
    const sql = underCreate.filter((s) => s.name === 'db.query');
    expect(sql.length).toBeGreaterThan(1);
    for (const s of sql) {
      expect(s.kind).toBe(CLIENT);
      expect(s.attributes['db.system.name']).toBe('postgresql');
      expect(String(s.attributes['db.query.text']).length).toBeLessThanOrEqual(2_048);
    }
    expect(sql.some((s) => s.attributes['db.operation.name'] === 'INSERT')).toBe(true);
    // Statements are sent with placeholders, never with the values bound to them.
    expect(sql.some((s) => /\$1\b/.test(String(s.attributes['db.query.text'])))).toBe(true);

    // The search embedded its (new, so uncached) query under its own span.
    const underSearch = descendants(spans, search);
    const embed = underSearch.find((s) => s.name === 'embedder.embed');
    expect(embed?.attributes).toMatchObject({
      'engram.embedder.provider': 'builtin',
      'engram.embedder.inputs': 1,
      'engram.embedder.cache_misses': 1,
    });
    const batch = underSearch.find((s) => s.name === 'embedder.batch');
    expect(batch?.parentSpanId).toBe(embed?.spanId);
    expect(batch?.attributes['engram.embedder.batch_size']).toBe(1);
    expect(underSearch.some((s) => s.name === 'db.query')).toBe(true);
    if (backend === 'postgres') {
      // Valkey: the embedding cache lookup, under the embedder span.
      const mget = underSearch.find((s) => s.name === 'valkey MGET');
      expect(mget?.parentSpanId).toBe(embed?.spanId);
      expect(mget?.attributes).toMatchObject({ 'db.system.name': 'redis', 'db.operation.name': 'MGET' });
    }

    const exported = receiver.bodies.join('\n');
    expect(exported).not.toContain(secret);
    expect(exported).not.toContain(query);
    expect(exported).not.toContain(org.key);
  });

  it('traces an MCP tool call under the HTTP request that carried it', async () => {
    const traceId = hex(16);
    const parentId = hex(8);
    const client = new Client({ name: 'tracing-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL('/mcp', url), {
        requestInit: { headers: { ...org.auth, traceparent: traceparent(traceId, parentId, true) } },
      }),
    );
    const secret = `mcp-canary-${hex(6)}`;
    const result = await client.callTool({ name: 'remember', arguments: { content: `Remember ${secret}` } });
    await client.close();
    expect(result.isError).not.toBe(true);

    const spans = await flushUntil(t, receiver, (all) =>
      all.some((s) => s.traceId === traceId && s.name === 'mcp.tool remember'),
    );
    const tool = spans.find((s) => s.traceId === traceId && s.name === 'mcp.tool remember');
    expect(tool?.attributes).toMatchObject({ 'mcp.tool.name': 'remember', 'engram.outcome': 'success' });
    const http = spans.find((s) => s.spanId === tool?.parentSpanId);
    expect(http).toMatchObject({ kind: SERVER, name: 'POST /mcp', parentSpanId: parentId });
    if (tool === undefined) throw new Error('tool span missing');
    expect(
      descendants(spans, tool).some((s) => s.name === 'db.query' && s.attributes['db.operation.name'] === 'INSERT'),
    ).toBe(true);
    expect(receiver.bodies.join('\n')).not.toContain(secret);
  });

  it('names the span by route template and leaves client errors unmarked', async () => {
    const traceId = hex(16);
    const id = '01a2013f-67d9-747f-96d4-e8d35187ad10';
    const res = await fetch(`${url}/v1/memories/${id}`, {
      headers: { ...org.auth, traceparent: traceparent(traceId, hex(8), true) },
    });
    expect(res.status).toBe(404);
    const spans = await flushUntil(t, receiver, (all) => all.some((s) => s.traceId === traceId && s.kind === SERVER));
    const server = spans.find((s) => s.traceId === traceId && s.kind === SERVER);
    expect(server?.name).toBe('GET /v1/memories/:id');
    expect(server?.attributes).toMatchObject({ 'http.route': '/v1/memories/:id', 'http.response.status_code': 404 });
    expect(server?.status).not.toBe(ERROR);
    expect(receiver.bodies.join('\n')).not.toContain(id);
  });
});

describe(`trace sampling (${backend})`, () => {
  let receiver: OtlpReceiver;
  let t: TestEngram;
  let org: TestOrg;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    t = await createTestEngram({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, ENGRAM_TRACE_SAMPLE_RATIO: '0' });
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('exports nothing at ratio 0 unless the caller sampled the trace', async () => {
    const unsampled = hex(16);
    const sampled = hex(16);
    const list = (tp?: string) =>
      t.app.inject({
        method: 'GET',
        url: '/v1/memories',
        headers: { ...org.auth, ...(tp === undefined ? {} : { traceparent: tp }) },
      });
    expect((await list()).statusCode).toBe(200);
    expect((await list(traceparent(unsampled, hex(8), false))).statusCode).toBe(200);
    await t.engram.tracing.forceFlush();
    expect(receiver.spans).toHaveLength(0);

    // Parent-based: a sampled caller is followed even at ratio 0.
    expect((await list(traceparent(sampled, hex(8), true))).statusCode).toBe(200);
    const spans = await flushUntil(t, receiver, (all) => all.some((s) => s.kind === SERVER));
    expect(spans.length).toBeGreaterThan(0);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([sampled]));
  });

  it('defaults to every trace in development and 1 % in production', () => {
    expect(testConfig({}).tracing.sampleRatio).toBe(1);
    expect(testConfig({ NODE_ENV: 'production' }).tracing.sampleRatio).toBe(0.01);
    expect(testConfig({ NODE_ENV: 'production', OTEL_TRACES_SAMPLER_ARG: '0.25' }).tracing.sampleRatio).toBe(0.25);
    expect(testConfig({ OTEL_TRACES_SAMPLER_ARG: '0.25', ENGRAM_TRACE_SAMPLE_RATIO: '0.5' }).tracing.sampleRatio).toBe(
      0.5,
    );
    expect(testConfig({}).tracing.endpoint).toBeUndefined();
    expect(redactedSummary(testConfig({})).tracing).toBe('off');
    expect(testConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing.endpoint).toBe(
      'http://collector:4318/v1/traces',
    );
  });

  it('reads export headers without ever printing their values', () => {
    const config = testConfig({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector.example/v1/traces',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=s3cr%3Dt, x-team = ops',
    });
    expect(config.tracing.endpoint).toBe('https://collector.example/v1/traces');
    expect(config.tracing.headers).toEqual({ 'x-api-key': 's3cr=t', 'x-team': 'ops' });
    const summary = JSON.stringify(redactedSummary(config));
    expect(summary).toContain('x-api-key');
    expect(summary).not.toContain('s3cr');
    expect(() => testConfig({ OTEL_EXPORTER_OTLP_HEADERS: 'no-equals-sign' })).toThrow(/OTEL_EXPORTER_OTLP_HEADERS/);
  });
});

/** A logger like the server's, writing its JSON lines into an array. */
function capturingLogger(): { log: Logger; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = createLogger(testConfig({ LOG_LEVEL: 'info' }), sink);
  const raw = () => chunks.join('');
  return {
    log,
    raw,
    lines: () =>
      raw()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe(`request logs (${backend})`, () => {
  let receiver: OtlpReceiver;
  let t: TestEngram;
  let org: TestOrg;
  const capture = capturingLogger();

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    t = await createTestEngram({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, { logger: capture.log });
    org = await t.makeOrg();
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('logs one line per request with request id, org, route, status, latency and trace id — and no secrets', async () => {
    const traceId = hex(16);
    const secret = `log-canary-${hex(6)}`;
    const query = `log-query-${hex(6)}`;
    const headers = { ...org.auth, traceparent: traceparent(traceId, hex(8), true) };
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { ...headers, 'x-request-id': 'req-log-1' },
      payload: { content: `Note ${secret}` },
    });
    expect(created.statusCode).toBe(201);
    const searched = await t.app.inject({
      method: 'POST',
      url: `/v1/memories/search?q=${query}`,
      headers: { ...headers, 'x-request-id': 'req-log-2' },
      payload: { query },
    });
    expect(searched.statusCode).toBe(200);
    const anonymous = await t.app.inject({
      method: 'GET',
      url: '/v1/memories',
      headers: { 'x-request-id': 'req-log-3' },
    });
    expect(anonymous.statusCode).toBe(401);

    const lines = capture.lines();
    const byReq = (id: string) => lines.filter((l) => l.reqId === id && l.msg === 'request completed');
    expect(byReq('req-log-1')).toHaveLength(1);
    expect(byReq('req-log-1')[0]).toMatchObject({
      level: 30,
      method: 'POST',
      route: '/v1/memories',
      statusCode: 201,
      org: org.orgId,
      trace_id: traceId,
      latencyMs: expect.any(Number),
    });
    expect(byReq('req-log-2')[0]).toMatchObject({ route: '/v1/memories/search', statusCode: 200, trace_id: traceId });
    expect(byReq('req-log-3')[0]).toMatchObject({ route: '/v1/memories', statusCode: 401 });
    expect(byReq('req-log-3')[0]).not.toHaveProperty('org');
    // Fastify's own per-request lines (with the raw URL) are off.
    expect(lines.filter((l) => l.msg === 'incoming request')).toHaveLength(0);

    const text = capture.raw();
    expect(text).not.toContain(secret);
    expect(text).not.toContain(query);
    expect(text).not.toContain(org.key);
  });

  it('redacts credentials and content, and adds the active span’s ids to any line', async () => {
    const { log, lines } = capturingLogger();
    const tracing = startTracing(
      { endpoint: receiver.url + '/v1/traces', serviceName: 'log-test', sampleRatio: 1 },
      undefined,
    );
    tracing.tracer.startActiveSpan('work', (span) => {
      log.info(
        {
          req: { headers: { authorization: 'Bearer egm_supersecret', dpop: 'proof', cookie: 'sid=1' } },
          memory: { content: 'very personal' },
          search: { query: 'also personal' },
        },
        'inside a span',
      );
      span.end();
    });
    await tracing.shutdown();
    const [line] = lines();
    expect(line?.req).toEqual({ headers: { authorization: '***', dpop: '***', cookie: '***' } });
    expect(line?.memory).toEqual({ content: '***' });
    expect(line?.search).toEqual({ query: '***' });
    expect(line?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(line?.span_id).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe(`request logs with tracing off (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  const capture = capturingLogger();

  beforeAll(async () => {
    t = await createTestEngram({}, { logger: capture.log });
    org = await t.makeOrg();
  });
  afterAll(async () => t?.close());

  it('logs a client that hangs up mid-request as aborted, not as an error', async () => {
    const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const { request } = await import('node:http');
    const req = request(new URL('/v1/memories', url), {
      method: 'POST',
      headers: { ...org.auth, 'content-type': 'application/json', 'content-length': '1000' },
    });
    req.on('error', () => undefined);
    req.write('{"content": "half a bo');
    // Let the server route the request before the client hangs up.
    await new Promise((r) => setTimeout(r, 100));
    req.destroy();
    await waitFor(() => capture.lines().some((l) => l.msg === 'request aborted by the client'));
    const aborted = capture.lines().find((l) => l.msg === 'request aborted by the client');
    expect(aborted).toMatchObject({ method: 'POST', route: '/v1/memories' });
    expect(capture.lines().filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
  });
});

/** Polls `cond` every 20 ms until it holds or `timeoutMs` passes (then returns quietly). */
async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}
