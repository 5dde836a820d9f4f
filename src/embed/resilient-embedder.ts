import { createHash } from 'node:crypto';
import { SpanKind, trace, type Tracer } from '@opentelemetry/api';
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  TimeoutStrategy,
  wrap,
  type CircuitBreakerPolicy,
  type IPolicy,
} from 'cockatiel';
import { AppError, errors } from '../errors.ts';
import type { Cache } from '../ports/cache.ts';
import { EMBED_MAX_BATCH, EMBED_MAX_CHARS, type Embedder } from '../ports/embedder.ts';
import { inSpan } from '../ops/tracing.ts';

export interface ResilienceOptions {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly breakerThreshold: number;
  readonly halfOpenAfterMs: number;
  readonly cacheTtlSeconds?: number;
  /** Told about cache lookups and provider batches (metrics); must not throw. */
  readonly observer?: EmbedderObserver | undefined;
  /** Spans `embedder.embed` (cache hits and misses) and `embedder.batch` per provider call; default no-op. */
  readonly tracer?: Tracer | undefined;
}

/** Hooks for instrumentation, so the embedder stays free of any metrics library. */
export interface EmbedderObserver {
  cacheLookups?(hits: number, misses: number): void;
  batch?(size: number): void;
}

/** The outcome of the most recent provider calls, for health reports that must not call a paid API. */
export interface EmbedderActivity {
  readonly lastSuccessAt: Date | undefined;
  readonly lastFailureAt: Date | undefined;
  readonly lastError: string | undefined;
  /** Duration of the last provider call (successful or not), in ms. */
  readonly lastLatencyMs: number | undefined;
}

export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated';

/**
 * Wraps a provider with what every embedder needs: inputs cut to
 * {@link EMBED_MAX_CHARS}, batches of at most {@link EMBED_MAX_BATCH}, a
 * content-hash cache keyed by model, and per batch a timeout, retries with
 * jittered exponential backoff and a circuit breaker (cockatiel). The cache is
 * best effort: if it fails, embedding goes on without it.
 */
export class ResilientEmbedder implements Embedder {
  readonly provider: Embedder['provider'];
  readonly model: string;
  readonly dimension: number;
  private readonly breaker: CircuitBreakerPolicy;
  private readonly policy: IPolicy;
  private readonly ttl: number;
  private readonly observer: EmbedderObserver | undefined;
  private readonly tracer: Tracer;
  readonly stats = { cacheHits: 0, cacheMisses: 0, batches: 0 };
  private last: EmbedderActivity = {
    lastSuccessAt: undefined,
    lastFailureAt: undefined,
    lastError: undefined,
    lastLatencyMs: undefined,
  };

  constructor(
    private readonly inner: Embedder,
    private readonly cache: Cache,
    opts: ResilienceOptions,
  ) {
    this.provider = inner.provider;
    this.model = inner.model;
    this.dimension = inner.dimension;
    this.ttl = opts.cacheTtlSeconds ?? 7 * 24 * 3600;
    this.observer = opts.observer;
    this.tracer = opts.tracer ?? trace.getTracer('engram');
    // A wrong dimension is a configuration error, not an outage: it must not open the circuit.
    this.breaker = circuitBreaker(
      handleWhen((e) => !(e instanceof AppError && e.code === 'EMBEDDING_DIMENSION_MISMATCH')),
      {
        halfOpenAfter: opts.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(opts.breakerThreshold),
      },
    );
    // A wrong dimension or an open circuit will not get better by retrying.
    const retryPolicy = retry(
      handleWhen((e) => !(e instanceof BrokenCircuitError) && !(e instanceof AppError)),
      { maxAttempts: opts.retries, backoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }) },
    );
    this.policy = wrap(retryPolicy, this.breaker, timeout(opts.timeoutMs, TimeoutStrategy.Aggressive));
    this.halfOpenAfterMs = opts.halfOpenAfterMs;
    this.breaker.onBreak(() => {
      this.openedAt = Date.now();
    });
  }

  /**
   * Whether a call now would reach the provider: the circuit is not open, or
   * it has been open long enough that the next call is its half-open probe.
   * (The circuit only half-opens when called, so a caller that waits for it
   * to leave `open` without calling would wait forever.)
   */
  get acceptsCalls(): boolean {
    return this.breaker.state !== CircuitState.Open || Date.now() - this.openedAt >= this.halfOpenAfterMs;
  }

  private readonly halfOpenAfterMs: number;
  private openedAt = 0;

  get breakerState(): BreakerState {
    switch (this.breaker.state) {
      case CircuitState.Closed:
        return 'closed';
      case CircuitState.Open:
        return 'open';
      case CircuitState.HalfOpen:
        return 'half-open';
      default:
        return 'isolated';
    }
  }

  /** Called with the new state on each circuit transition (metrics count them). */
  onBreakerTransition(listener: (to: BreakerState) => void): void {
    this.breaker.onStateChange(() => listener(this.breakerState));
  }

  /** When the provider last answered or failed; read by /health/deps instead of probing the provider. */
  get activity(): EmbedderActivity {
    return this.last;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    return inSpan(this.tracer, 'embedder.embed', { attributes: this.spanAttributes() }, (span) =>
      this.embedAll(texts, (hits, misses) =>
        span.setAttributes({
          'engram.embedder.inputs': texts.length,
          'engram.embedder.cache_hits': hits,
          'engram.embedder.cache_misses': misses,
        }),
      ),
    );
  }

  private spanAttributes() {
    return { 'engram.embedder.provider': this.provider, 'engram.embedder.model': this.model };
  }

  private async embedAll(
    texts: readonly string[],
    onLookup: (hits: number, misses: number) => void,
  ): Promise<Float32Array[]> {
    const inputs = texts.map((t) => (t.length > EMBED_MAX_CHARS ? t.slice(0, EMBED_MAX_CHARS) : t));
    const keys = inputs.map((t) => `emb:${this.model}:${createHash('sha256').update(t).digest('base64url')}`);
    const cached = await this.cache.getMany(keys).catch(() => keys.map(() => undefined));
    const out: Array<Float32Array | undefined> = cached.map((b) =>
      b !== undefined && b.byteLength === this.dimension * 4
        ? new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))
        : undefined,
    );
    const missing = out.flatMap((v, i) => (v === undefined ? [i] : []));
    this.stats.cacheHits += inputs.length - missing.length;
    this.stats.cacheMisses += missing.length;
    this.observer?.cacheLookups?.(inputs.length - missing.length, missing.length);
    onLookup(inputs.length - missing.length, missing.length);
    for (let start = 0; start < missing.length; start += EMBED_MAX_BATCH) {
      const idx = missing.slice(start, start + EMBED_MAX_BATCH);
      const vectors = await this.embedBatch(idx.map((i) => inputs[i] ?? ''));
      const fresh: Array<readonly [string, Buffer]> = [];
      idx.forEach((i, j) => {
        const v = vectors[j];
        if (v === undefined) return;
        out[i] = v;
        // Copy: the cache must not share memory with vectors handed to callers.
        fresh.push([keys[i] ?? '', Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))]);
      });
      await this.cache.setMany(fresh, this.ttl).catch(() => undefined);
    }
    return out.map((v) => {
      if (v === undefined) throw errors.internal(new Error('embedding missing after batch'));
      return v;
    });
  }

  private async embedBatch(batch: string[]): Promise<Float32Array[]> {
    return inSpan(
      this.tracer,
      'embedder.batch',
      { kind: SpanKind.CLIENT, attributes: { ...this.spanAttributes(), 'engram.embedder.batch_size': batch.length } },
      () => this.embedBatchUntraced(batch),
    );
  }

  private async embedBatchUntraced(batch: string[]): Promise<Float32Array[]> {
    this.stats.batches += 1;
    this.observer?.batch?.(batch.length);
    const t0 = performance.now();
    try {
      const vectors = await this.checked(batch);
      this.last = { ...this.last, lastSuccessAt: new Date(), lastLatencyMs: performance.now() - t0 };
      return vectors;
    } catch (e) {
      this.last = {
        ...this.last,
        lastFailureAt: new Date(),
        lastError: describe(e),
        lastLatencyMs: performance.now() - t0,
      };
      throw e;
    }
  }

  private async checked(batch: string[]): Promise<Float32Array[]> {
    let vectors: Float32Array[];
    try {
      vectors = await this.policy.execute(() => this.inner.embed(batch));
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw errors.embedderUnavailable(e);
    }
    if (vectors.length !== batch.length) {
      throw errors.embedderUnavailable(new Error(`got ${vectors.length} vectors for ${batch.length} inputs`));
    }
    for (const v of vectors) {
      if (v.length !== this.dimension) throw errors.dimensionMismatch(this.model, this.dimension, v.length);
    }
    return vectors;
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

/** The error and its cause, bounded: a provider's body may be long. */
function describe(e: unknown): string {
  const err = e as Error;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`.slice(0, 300);
}
