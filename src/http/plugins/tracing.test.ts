import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import Fastify, { type FastifyInstance } from 'fastify';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import { startTracing, type Tracing } from '../../ops/tracing.ts';
import { installTracing, traceIdOf } from './tracing.ts';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

describe(installTracing.name, () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let app: FastifyInstance;
  let loggedTraceId: string | undefined;
  let url: string;

  beforeAll(async () => {
    tracing = startTracing({ endpoint: undefined, serviceName: 'plugin-test', sampleRatio: 1 }, exporter);
    app = Fastify();
    installTracing(app, tracing.tracer);
    // Stands for the auth hook: its work must nest under the request span too.
    app.addHook('onRequest', async () => {
      await Promise.resolve();
      tracing.tracer.startSpan('in-hook').end();
    });
    app.post('/things/:id', async (req) => {
      await new Promise((r) => setTimeout(r, 1));
      tracing.tracer.startSpan('in-handler').end();
      loggedTraceId = traceIdOf(req);
      return { ok: true, body: req.body };
    });
    app.get('/boom', async () => {
      throw new AppError('INTERNAL', 'the user wrote something private');
    });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await app.close();
    await tracing.shutdown();
  });

  const finished = async (): Promise<ReadableSpan[]> => {
    await tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    exporter.reset();
    return spans;
  };

  it('continues the traceparent and keeps the span active through hooks, body parsing and the handler', async () => {
    // Real HTTP: the body arrives from the socket after the hooks, unlike with inject().
    const res = await fetch(`${url}/things/42?secret=yes`, {
      method: 'POST',
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, 'content-type': 'application/json' },
      body: JSON.stringify({ private: 'text' }),
    });
    expect(res.status).toBe(200);
    const spans = await finished();
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    expect(server?.name).toBe('POST /things/:id');
    expect(server?.spanContext().traceId).toBe(TRACE_ID);
    expect(server?.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(server?.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/things/:id',
      'http.response.status_code': 200,
    });
    // The URL and its query string stay out (they may carry search text).
    expect(JSON.stringify(server?.attributes)).not.toContain('secret');
    for (const name of ['in-hook', 'in-handler']) {
      const child = spans.find((s) => s.name === name);
      expect(child?.parentSpanContext?.spanId, name).toBe(server?.spanContext().spanId);
    }
    expect(loggedTraceId).toBe(TRACE_ID);
  });

  it('keeps the span active when the body arrives in pieces after the hooks ran', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/things/7`, {
        method: 'POST',
        headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, 'content-type': 'application/json' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.flushHeaders();
      req.write('{"part":');
      // The rest comes later, from the socket: body parsing resumes outside the hooks' context.
      setTimeout(() => req.end('"two"}'), 30);
    });
    expect(status).toBe(200);
    const spans = await finished();
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const child = spans.find((s) => s.name === 'in-handler');
    expect(child?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
  });

  it('starts a new trace without a traceparent', async () => {
    await app.inject({ method: 'POST', url: '/things/1', payload: {} });
    const server = (await finished()).find((s) => s.kind === SpanKind.SERVER);
    expect(server?.parentSpanContext).toBeUndefined();
    expect(trace.isSpanContextValid(server!.spanContext())).toBe(true);
  });

  it('marks a 5xx as an error with the error code, never its message', async () => {
    const res = await app.inject({ method: 'GET', url: '/boom' });
    expect(res.statusCode).toBe(500);
    const server = (await finished()).find((s) => s.kind === SpanKind.SERVER);
    expect(server?.status.code).toBe(SpanStatusCode.ERROR);
    expect(server?.attributes['error.type']).toBe('INTERNAL');
    expect(
      JSON.stringify({ attributes: server?.attributes, events: server?.events, status: server?.status }),
    ).not.toContain('private');
  });

  it('names an unmatched request by its method alone', async () => {
    const res = await app.inject({ method: 'GET', url: '/no/such/thing' });
    expect(res.statusCode).toBe(404);
    const server = (await finished()).find((s) => s.kind === SpanKind.SERVER);
    expect(server?.name).toBe('GET');
    expect(server?.attributes['http.route']).toBeUndefined();
    expect(server?.status.code).not.toBe(SpanStatusCode.ERROR);
  });
});
