import {
  context,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { parseTraceParent, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import type { FastifyInstance, FastifyRequest } from 'fastify';

interface RequestTrace {
  readonly span: Span;
  readonly ctx: Context;
  ended: boolean;
  /** The failing error's code or class, from `onError`. */
  errorType?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    trace: RequestTrace | null;
  }
}

const propagator = new W3CTraceContextPropagator();

/**
 * A SERVER span per request, named `METHOD /route/template`, continuing the
 * caller's trace when it sends a W3C `traceparent` (and `tracestate`).
 * Attributes are the method, route template, scheme, status and, once
 * authenticated, the org id — never the URL (queries may hold search text),
 * headers, body or client address.
 *
 * Fastify runs hooks and the handler through callbacks and promise chains
 * that do not start inside an async hook, so `context.with` around one hook
 * would not reach the handler. Instead `onRequest` is a callback-style hook
 * that calls `done()` inside `context.with`: everything Fastify runs next —
 * later hooks (auth), the handler, `onSend` — starts from there and inherits
 * the span, so SQL, Valkey, embedder and MCP spans nest under it. Body
 * parsing, which resumes from socket events, keeps it too: Fastify runs the
 * parser's callback in an AsyncResource made when parsing began. Install
 * before the hooks that should be traced.
 */
export function installTracing(app: FastifyInstance, tracer: Tracer): void {
  app.decorateRequest('trace', null);

  app.addHook('onRequest', (req, reply, done) => {
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter);
    const route = req.routeOptions.url;
    const span = tracer.startSpan(
      route === undefined ? req.method : `${req.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: req.method,
          [ATTR_URL_SCHEME]: req.protocol,
          ...(route === undefined ? {} : { [ATTR_HTTP_ROUTE]: route }),
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    req.trace = { span, ctx, ended: false };
    context.with(ctx, done);
  });

  app.addHook('onError', async (req, reply, err) => {
    if (req.trace === null) return;
    const code = (err as { code?: unknown }).code;
    // The class or code only: an error's message may quote user data.
    req.trace.errorType = typeof code === 'string' ? code : err.name;
  });

  app.addHook('onResponse', async (req, reply) => {
    finish(req, reply.statusCode);
  });

  app.addHook('onRequestAbort', async (req) => {
    finish(req, undefined);
  });
}

function finish(req: FastifyRequest, status: number | undefined): void {
  const t = req.trace;
  if (t === null || t.ended) return;
  t.ended = true;
  if (req.ctx !== undefined) t.span.setAttribute('engram.org_id', req.ctx.orgId);
  if (status === undefined) {
    t.span.setAttribute(ATTR_ERROR_TYPE, 'aborted');
    t.span.setStatus({ code: SpanStatusCode.ERROR });
  } else {
    t.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    // Server spans are errors on 5xx only: a 4xx is the client's (OTel HTTP conventions).
    if (status >= 500) {
      t.span.setAttribute(ATTR_ERROR_TYPE, t.errorType ?? String(status));
      t.span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }
  t.span.end();
}

/**
 * The trace id to log for a request: its span's, else the caller's
 * `traceparent` (tracing off still lets logs join the caller's trace).
 */
export function traceIdOf(req: FastifyRequest): string | undefined {
  // Undefined, not null, when tracing is off: the plugin that decorates requests is not installed.
  const span = (req.trace as FastifyRequest['trace'] | undefined)?.span;
  if (span !== undefined) {
    const sc = span.spanContext();
    if (trace.isSpanContextValid(sc)) return sc.traceId;
  }
  const header = req.headers.traceparent;
  if (typeof header !== 'string') return undefined;
  return parseTraceParent(header)?.traceId;
}
