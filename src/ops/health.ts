/**
 * Readiness: the server can serve when every probe answers within its
 * deadline and it is not shutting down. Liveness needs nothing but the event
 * loop, which is the point: it must answer even while the store is busy.
 */
export interface Probe {
  readonly name: string;
  check(): Promise<void>;
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Record<string, { ok: boolean; latencyMs: number; error?: string }>;
}

export class Health {
  private shuttingDown = false;
  constructor(
    private readonly probes: readonly Probe[],
    private readonly timeoutMs = 1_000,
  ) {}

  markShuttingDown(): void {
    this.shuttingDown = true;
  }

  async ready(): Promise<ReadinessReport> {
    const checks: ReadinessReport['checks'] = {};
    await Promise.all(
      this.probes.map(async (p) => {
        const t0 = performance.now();
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            p.check(),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
            }),
          ]);
          checks[p.name] = { ok: true, latencyMs: Math.round(performance.now() - t0) };
        } catch (e) {
          checks[p.name] = { ok: false, latencyMs: Math.round(performance.now() - t0), error: (e as Error).message };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    if (this.shuttingDown) checks.shutdown = { ok: false, latencyMs: 0, error: 'shutting down' };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }
}

export type DependencyStatus = 'up' | 'degraded' | 'down';

/** What one dependency probe found; `details` is shown to operators only. */
export interface DependencyCheck {
  readonly status: DependencyStatus;
  /** Why it is not up; shown to operators only. */
  readonly error?: string;
  readonly details?: Record<string, unknown>;
}

export interface DependencyProbe {
  readonly name: string;
  /**
   * A probe that does I/O (a ping) has its result reused for the cache window,
   * so a public endpoint cannot be used to hammer the store; a probe that only
   * reads in-process state runs on every report.
   */
  readonly io: boolean;
  check(): Promise<DependencyCheck>;
}

export interface DependencyResult {
  readonly status: DependencyStatus;
  readonly latencyMs: number;
  readonly error?: string;
  readonly details?: Record<string, unknown>;
}

export interface DependencyReport {
  /** `down` when the store is down, `degraded` when anything else is not up. */
  readonly status: DependencyStatus;
  readonly checkedAt: Date;
  readonly deps: Record<string, DependencyResult>;
}

/**
 * The state of each dependency (store, Valkey, embedder) for `/health/deps`.
 * Unlike readiness it tells degraded from down: Engram keeps serving without
 * Valkey or the embedder, only worse.
 */
export class DependencyHealth {
  private cached = new Map<string, { at: number; result: Promise<DependencyResult> }>();

  constructor(
    private readonly probes: readonly DependencyProbe[],
    private readonly opts: { timeoutMs?: number; cacheMs?: number; essential?: readonly string[] } = {},
  ) {}

  async report(): Promise<DependencyReport> {
    const results = await Promise.all(this.probes.map(async (p) => [p.name, await this.result(p)] as const));
    const deps = Object.fromEntries(results);
    const essential = new Set(this.opts.essential ?? ['store']);
    const status: DependencyStatus = results.some(([n, r]) => essential.has(n) && r.status === 'down')
      ? 'down'
      : results.every(([, r]) => r.status === 'up')
        ? 'up'
        : 'degraded';
    return { status, checkedAt: new Date(), deps };
  }

  private result(p: DependencyProbe): Promise<DependencyResult> {
    if (!p.io) return this.run(p);
    const now = Date.now();
    const hit = this.cached.get(p.name);
    if (hit !== undefined && now - hit.at < (this.opts.cacheMs ?? 5_000)) return hit.result;
    // Concurrent callers share one in-flight probe.
    const result = this.run(p);
    this.cached.set(p.name, { at: now, result });
    return result;
  }

  private async run(p: DependencyProbe): Promise<DependencyResult> {
    const timeoutMs = this.opts.timeoutMs ?? 1_000;
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const c = await Promise.race([
        p.check(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      return {
        status: c.status,
        latencyMs: elapsed(t0),
        ...(c.error === undefined ? {} : { error: c.error }),
        ...(c.details === undefined ? {} : { details: c.details }),
      };
    } catch (e) {
      return { status: 'down', latencyMs: elapsed(t0), error: (e as Error).message };
    } finally {
      clearTimeout(timer);
    }
  }
}

const elapsed = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;

/**
 * A dependency that is up when `ping` resolves, down when it throws or times
 * out. `details` (say, its circuit breaker) is reported either way.
 */
export const pingProbe = (
  name: string,
  ping: () => Promise<void>,
  details?: () => Record<string, unknown>,
): DependencyProbe => ({
  name,
  io: true,
  check: async () => {
    try {
      await ping();
    } catch (e) {
      if (details === undefined) throw e;
      return { status: 'down', error: (e as Error).message, details: details() };
    }
    return details === undefined ? { status: 'up' } : { status: 'up', details: details() };
  },
});

/**
 * The embedder (or the reranker, under `name`) judged without calling it (a
 * paid API must not be billed for health checks): open circuit → down; half-open, or a failure more recent
 * than the last success → degraded; else up.
 */
export const embedderProbe = (
  embedder: {
    readonly provider: string;
    readonly model: string;
    readonly breakerState: string;
    readonly activity: {
      readonly lastSuccessAt: Date | undefined;
      readonly lastFailureAt: Date | undefined;
      readonly lastError: string | undefined;
      readonly lastLatencyMs: number | undefined;
    };
  },
  name = 'embedder',
): DependencyProbe => ({
  name,
  io: false,
  check: async () => {
    const breaker = embedder.breakerState;
    const a = embedder.activity;
    const failingLately =
      a.lastFailureAt !== undefined && (a.lastSuccessAt === undefined || a.lastFailureAt > a.lastSuccessAt);
    const status: DependencyStatus =
      breaker === 'open' || breaker === 'isolated'
        ? 'down'
        : breaker === 'half-open' || failingLately
          ? 'degraded'
          : 'up';
    return {
      status,
      details: {
        provider: embedder.provider,
        model: embedder.model,
        breaker,
        lastSuccessAt: a.lastSuccessAt?.toISOString() ?? null,
        lastFailureAt: a.lastFailureAt?.toISOString() ?? null,
        lastCallLatencyMs: a.lastLatencyMs === undefined ? null : Math.round(a.lastLatencyMs),
        ...(failingLately && a.lastError !== undefined ? { lastError: a.lastError } : {}),
      },
    };
  },
});
