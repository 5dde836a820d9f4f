import { AsyncLocalStorage } from 'node:async_hooks';
import {
  context,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
  type Span,
  type SpanKind,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

/** What tracing needs from the configuration (`Config.tracing`). */
export interface TracingOptions {
  /** Full OTLP/HTTP traces URL; undefined (and no `exporter`): tracing off. */
  readonly endpoint: string | undefined;
  readonly headers?: Readonly<Record<string, string>>;
  readonly serviceName: string;
  readonly serviceVersion?: string;
  /** Share of new traces sampled, 0…1; an incoming `traceparent` decides for its own trace. */
  readonly sampleRatio: number;
}

/**
 * One instance's tracer and the pipeline behind it. The provider is never
 * registered as the global one: every component gets `tracer` as a
 * dependency, so two instances in one process (tests) export to their own
 * receivers. Only the context manager is global — it carries the active span
 * across awaits and is the same for everyone.
 */
export interface Tracing {
  /** False when no exporter is configured: `tracer` is then the API's no-op (or a globally registered SDK's). */
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** Exports every finished span now. */
  forceFlush(): Promise<void>;
  /** Flushes and stops the exporter; later spans are dropped. */
  shutdown(): Promise<void>;
}

const INSTRUMENTATION = 'engram';

/**
 * The active OpenTelemetry context in an AsyncLocalStorage, so a span started
 * in a request stays the parent of whatever that request awaits. Written here
 * rather than taken from `@opentelemetry/context-async-hooks`, which is not
 * one of our direct dependencies; it is the same few lines.
 */
class AsyncLocalStorageContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as (...args: unknown[]) => unknown;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the manager, captured for the bound function
    const manager = this;
    return function (this: unknown, ...args: unknown[]) {
      return manager.with(ctx, () => fn.apply(this, args));
    } as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    return this;
  }
}

let contextManagerInstalled = false;

/** Installs the AsyncLocalStorage context manager once per process (idempotent). */
export function installContextManager(): void {
  if (contextManagerInstalled) return;
  contextManagerInstalled = true;
  // false: another SDK in the process already installed one; its context works for us too.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/**
 * Builds the tracer for one instance: parent-based sampling around a trace-id
 * ratio, and a batch processor exporting OTLP/HTTP JSON to `endpoint` (or to
 * `exporter`, for tests). Without either, tracing is off and costs a no-op.
 */
export function startTracing(opts: TracingOptions, exporter?: SpanExporter): Tracing {
  const sink =
    exporter ??
    (opts.endpoint === undefined
      ? undefined
      : new OTLPTraceExporter({ url: opts.endpoint, headers: { ...opts.headers }, timeoutMillis: 10_000 }));
  if (sink === undefined) {
    return {
      enabled: false,
      tracer: trace.getTracer(INSTRUMENTATION),
      forceFlush: async () => undefined,
      shutdown: async () => undefined,
    };
  }
  installContextManager();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: opts.serviceName,
      ...(opts.serviceVersion === undefined ? {} : { [ATTR_SERVICE_VERSION]: opts.serviceVersion }),
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(sink, { scheduledDelayMillis: 2_000 })],
    // Statements are cut to 2 KB where they are recorded; this bounds any other attribute.
    spanLimits: { attributeValueLengthLimit: 4_096 },
  });
  let stopped = false;
  return {
    enabled: true,
    tracer: provider.getTracer(INSTRUMENTATION, opts.serviceVersion),
    forceFlush: () => provider.forceFlush(),
    shutdown: async () => {
      if (stopped) return;
      stopped = true;
      await provider.shutdown();
    },
  };
}

/**
 * Runs `fn` inside a new span, active for everything it awaits; the span ends
 * when `fn` settles and is marked as an error when it throws (the error's
 * class only: messages may carry user data).
 */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  opts: { kind?: SpanKind; attributes?: Attributes },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(name, opts, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      markError(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

/** Flags a span as failed with `error.type` (a code or class name), never the message. */
export function markError(span: Span, e: unknown): void {
  const code = (e as { code?: unknown } | null)?.code;
  const type = typeof code === 'string' ? code : e instanceof Error ? e.name : 'Error';
  span.setAttribute('error.type', type);
  span.setStatus({ code: SpanStatusCode.ERROR });
}

/** `trace_id`/`span_id` of the active span, for log lines; empty when none is recording. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}
