import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Circuit states as the `engram_embedder_breaker_state` gauge encodes them. */
const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2, isolated: 2 } as const;

export type BreakerGaugeState = keyof typeof BREAKER_VALUE;

export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
}

/**
 * The Prometheus series Engram exposes, on a registry of its own (never the
 * global one: two apps in one process, as in tests, must not share counters).
 * Gauges that mirror another component's state (breaker, pool) are read at
 * scrape time through the sources given to {@link Metrics.watch}, so nothing
 * has to push them.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status_class'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly embedderBreakerState: Gauge<'provider'>;
  readonly embedderBatchSize: Histogram;
  readonly cacheRequests: Counter<'cache' | 'result'>;
  readonly dbPoolConnections: Gauge<'state'>;
  /** Incremented by the rate limiter for each refused request; `class` is the limit's class. */
  readonly rateLimitRejections: Counter<'class'>;
  readonly auditAppendFailures: Counter;
  private breakerSources: Array<{ provider: string; state: () => BreakerGaugeState }> = [];
  private poolSource: (() => PoolStats) | undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: 'engram_http_requests_total',
      help: 'HTTP requests answered, by route template and status class',
      labelNames: ['method', 'route', 'status_class'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'engram_http_request_duration_seconds',
      help: 'Time from receiving a request to sending its response',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const sources = () => this.breakerSources;
    this.embedderBreakerState = new Gauge({
      name: 'engram_embedder_breaker_state',
      help: 'Embedder circuit breaker: 0 closed, 1 half-open, 2 open',
      labelNames: ['provider'],
      registers,
      collect() {
        for (const s of sources()) this.set({ provider: s.provider }, BREAKER_VALUE[s.state()]);
      },
    });
    this.embedderBatchSize = new Histogram({
      name: 'engram_embedder_batch_size',
      help: 'Inputs per batch sent to the embedding provider (cache misses only)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.cacheRequests = new Counter({
      name: 'engram_cache_requests_total',
      help: 'Cache lookups by cache and result',
      labelNames: ['cache', 'result'],
      registers,
    });
    const pool = () => this.poolSource?.();
    this.dbPoolConnections = new Gauge({
      name: 'engram_db_pool_connections',
      help: 'Database connections of the application pool by state (PGlite: one session)',
      labelNames: ['state'],
      registers,
      collect() {
        const s = pool();
        if (s === undefined) return;
        this.set({ state: 'total' }, s.total);
        this.set({ state: 'idle' }, s.idle);
        this.set({ state: 'waiting' }, s.waiting);
      },
    });
    this.rateLimitRejections = new Counter({
      name: 'engram_rate_limit_rejections_total',
      help: 'Requests refused by the rate limiter, by limit class',
      labelNames: ['class'],
      registers,
    });
    this.auditAppendFailures = new Counter({
      name: 'engram_audit_append_failures_total',
      help: 'Audit entries that could not be written',
      registers,
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'engram_' });
  }

  /** Registers where scrape-time gauges read their values. */
  watch(sources: { breaker?: { provider: string; state: () => BreakerGaugeState }; pool?: () => PoolStats }): void {
    if (sources.breaker !== undefined) this.breakerSources = [...this.breakerSources, sources.breaker];
    if (sources.pool !== undefined) this.poolSource = sources.pool;
  }

  /** Hooks for `ResilientEmbedder`'s observer option. */
  embedderObserver(cache = 'embedding'): {
    cacheLookups(hits: number, misses: number): void;
    batch(size: number): void;
  } {
    // Both series exist from the start, so a hit ratio is defined before the first miss.
    this.cacheRequests.inc({ cache, result: 'hit' }, 0);
    this.cacheRequests.inc({ cache, result: 'miss' }, 0);
    return {
      cacheLookups: (hits, misses) => {
        if (hits > 0) this.cacheRequests.inc({ cache, result: 'hit' }, hits);
        if (misses > 0) this.cacheRequests.inc({ cache, result: 'miss' }, misses);
      },
      batch: (size) => this.embedderBatchSize.observe(size),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for a scrape. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
