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
