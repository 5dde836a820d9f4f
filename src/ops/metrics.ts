import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Circuit states as the `engram_embedder_breaker_state` gauge encodes them. */
const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2, isolated: 2 } as const;

export type BreakerGaugeState = keyof typeof BREAKER_VALUE;

/** Depth of the job queue per kind and state, as `JobQueue.stats()` reports it. */
export interface JobQueueStats {
  readonly kind: string;
  readonly state: string;
  readonly count: number;
  /** Seconds since the oldest job of this kind and state was enqueued; null for finished states. */
  readonly oldestAgeSeconds: number | null;
}

/** Where the job gauges read from: every kind the workers run (reported even at zero) and the queue. */
export interface JobsSource {
  readonly kinds: readonly string[];
  stats(): Promise<readonly JobQueueStats[]>;
}

const JOB_STATES = ['queued', 'running', 'succeeded', 'dead'] as const;

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
  /** Circuit state per dependency (`store`, `valkey`, `embedder`), read at scrape time. */
  readonly dependencyBreakerState: Gauge<'dependency'>;
  /** Circuit transitions per dependency and the state entered (`closed`, `half-open`, `open`). */
  readonly dependencyBreakerTransitions: Counter<'dependency' | 'to'>;
  /** Rate-limit takes answered by the in-process fallback because Valkey was unavailable. */
  readonly rateLimitFallbacks: Counter;
  private dependencySources: Array<{ dependency: string; state: () => BreakerGaugeState }> = [];
  readonly jobsDepth: Gauge<'kind' | 'state'>;
  readonly jobsOldestAge: Gauge<'kind'>;
  /** Runs of background jobs by how they ended: `succeeded`, `retried`, `dead` or `lost` (lease lost). */
  readonly jobsProcessed: Counter<'kind' | 'result'>;
  private jobsSource: JobsSource | undefined;
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
    const dependencies = () => this.dependencySources;
    this.dependencyBreakerState = new Gauge({
      name: 'engram_dependency_breaker_state',
      help: 'Circuit breaker per dependency: 0 closed, 1 half-open, 2 open',
      labelNames: ['dependency'],
      registers,
      collect() {
        for (const d of dependencies()) this.set({ dependency: d.dependency }, BREAKER_VALUE[d.state()]);
      },
    });
    this.dependencyBreakerTransitions = new Counter({
      name: 'engram_dependency_breaker_transitions_total',
      help: 'Circuit breaker state changes per dependency, by the state entered',
      labelNames: ['dependency', 'to'],
      registers,
    });
    this.rateLimitFallbacks = new Counter({
      name: 'engram_rate_limit_fallbacks_total',
      help: 'Rate-limit decisions made in-process because Valkey was unavailable',
      registers,
    });
    // One query per scrape feeds both job gauges; it runs as system across orgs.
    let jobStats: Promise<readonly JobQueueStats[] | undefined> | undefined;
    // A slow store must not hang the scrape: after 2 s the job gauges are left out.
    const readJobStats = () =>
      (jobStats ??= Promise.race([
        this.jobsSource?.stats() ?? Promise.resolve(undefined),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000).unref()),
      ])
        .catch(() => undefined)
        .finally(() => setImmediate(() => (jobStats = undefined))));
    const jobKinds = () => this.jobsSource?.kinds ?? [];
    this.jobsDepth = new Gauge({
      name: 'engram_jobs_depth',
      help: 'Background jobs by kind and state (across orgs)',
      labelNames: ['kind', 'state'],
      registers,
      async collect() {
        const stats = await readJobStats();
        this.reset();
        if (stats === undefined) return;
        for (const kind of jobKinds()) for (const state of JOB_STATES) this.set({ kind, state }, 0);
        for (const s of stats) this.set({ kind: s.kind, state: s.state }, s.count);
      },
    });
    this.jobsOldestAge = new Gauge({
      name: 'engram_jobs_oldest_age_seconds',
      help: 'Age of the oldest unfinished (queued or running) job by kind, since it was enqueued; 0 when none',
      labelNames: ['kind'],
      registers,
      async collect() {
        const stats = await readJobStats();
        this.reset();
        if (stats === undefined) return;
        const oldest = new Map<string, number>(jobKinds().map((k) => [k, 0]));
        for (const s of stats) {
          if (s.oldestAgeSeconds !== null) oldest.set(s.kind, Math.max(oldest.get(s.kind) ?? 0, s.oldestAgeSeconds));
        }
        for (const [kind, age] of oldest) this.set({ kind }, age);
      },
    });
    this.jobsProcessed = new Counter({
      name: 'engram_jobs_processed_total',
      help: 'Background job runs by kind and result (succeeded, retried, dead, lost)',
      labelNames: ['kind', 'result'],
      registers,
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'engram_' });
  }

  /** Registers where scrape-time gauges read their values. */
  watch(sources: {
    breaker?: { provider: string; state: () => BreakerGaugeState };
    pool?: () => PoolStats;
    jobs?: JobsSource;
  }): void {
    if (sources.jobs !== undefined) this.jobsSource = sources.jobs;
    if (sources.breaker !== undefined) this.breakerSources = [...this.breakerSources, sources.breaker];
    if (sources.pool !== undefined) this.poolSource = sources.pool;
  }

  /** Exposes a dependency's circuit: its state at scrape time, and each transition as it happens. */
  watchDependency(
    dependency: string,
    breaker: {
      readonly state: BreakerGaugeState;
      onTransition(listener: (to: BreakerGaugeState) => void): unknown;
    },
  ): void {
    this.dependencySources = [...this.dependencySources, { dependency, state: () => breaker.state }];
    // Every series exists from the start, so increase() sees the first transition.
    for (const to of ['closed', 'half-open', 'open']) this.dependencyBreakerTransitions.inc({ dependency, to }, 0);
    breaker.onTransition((to) => this.dependencyBreakerTransitions.inc({ dependency, to }));
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
