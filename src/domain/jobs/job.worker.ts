import { AppError } from '../../errors.ts';
import type { JobQueue } from '../../ports/job-queue.ts';
import type { Job } from './job.types.ts';

/**
 * Does one job's work. Throwing schedules a retry (or the dead letter after
 * the last attempt); throwing an `AppError` that is not `retryable` (a limit
 * the input exceeds) sends the job to the dead letter at once. Handlers must be idempotent: after a crash or an expired
 * lease a job may run again, and a run may finish after its lease was lost.
 */
export type JobHandler = (job: Job) => Promise<void>;

/** How a run ended: `lost` when the worker no longer held the job (lease expired or released). */
export type JobOutcome = 'succeeded' | 'retried' | 'dead' | 'lost';

export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

/**
 * Delay before the next try after `attempt` failed runs: exponential
 * (base · 2^(attempt−1), capped at max) with "equal jitter" — half of it
 * fixed, half random — so jobs that failed together do not retry together.
 */
export function backoffMs(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** What is stored as a job's `lastError` (and shown to the org): a code and a client-safe message. */
export function describeJobError(e: unknown): string {
  if (e instanceof AppError) return `${e.code}: ${e.message}`;
  return 'INTERNAL: unexpected error; the server log has the details under this job id';
}

export interface JobWorkerOptions {
  readonly queue: JobQueue;
  readonly handlers: ReadonlyMap<string, JobHandler>;
  /** Unique per process: leases are held in this name. */
  readonly workerId: string;
  /** Jobs run at the same time. */
  readonly concurrency: number;
  /** Jobs of one org running at once across all workers (the queue enforces it); undefined: no cap. */
  readonly maxRunningPerOrg?: number | undefined;
  /** Pause between polls when nothing is due. */
  readonly pollMs: number;
  /** How long a claimed job is held before another worker may reclaim it. */
  readonly leaseMs: number;
  readonly backoff: BackoffOptions;
  /** Succeeded jobs are deleted this long after they finished. */
  readonly retentionMs: number;
  readonly random?: () => number;
  /**
   * Kinds not to claim for now, e.g. embedding while the embedder's circuit is
   * open: their jobs wait without spending attempts on a known outage.
   */
  readonly isPaused?: (kind: string) => boolean;
  /** Told how every run ended (metrics, logs); must not throw. */
  readonly onOutcome?: (job: Job, outcome: JobOutcome, error?: unknown) => void;
  /** Told when the queue itself failed (store unreachable); the worker keeps polling. */
  readonly onError?: (e: unknown) => void;
}

const PRUNE_EVERY_MS = 10 * 60_000;
const PRUNE_BATCH = 1_000;

/**
 * Runs jobs from the durable queue: claims due jobs up to `concurrency`,
 * runs each with its kind's handler, and records success, a retry with
 * backoff, or the dead letter. `start()` polls in the background;
 * `runOnce()` and `drain()` let tests and tools run the queue step by step.
 */
export class JobWorker {
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private lastPruneAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: JobWorkerOptions) {}

  /** Kinds this worker can run (it claims no others, so a newer kind waits for a newer worker). */
  get kinds(): string[] {
    return [...this.opts.handlers.keys()];
  }

  /** The kinds to claim now: those with a handler and not paused. */
  private claimable(): string[] {
    return this.kinds.filter((k) => this.opts.isPaused?.(k) !== true);
  }

  get workerId(): string {
    return this.opts.workerId;
  }

  /** Starts polling in the background. */
  start(): void {
    if (this.running || this.opts.concurrency <= 0) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /**
   * Stops claiming, waits up to `deadlineMs` for running jobs, then returns
   * the leases of those still running to the queue (due now, the interrupted
   * run not counted), so another worker takes them over at once.
   */
  async stop(deadlineMs: number): Promise<{ released: number }> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.allSettled([...this.inFlight]).then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs))),
    ]);
    clearTimeout(timer);
    if (finished) return { released: 0 };
    return { released: await this.opts.queue.release(this.opts.workerId) };
  }

  /** Polls now if the background loop is waiting (a job was just queued by this process). */
  poke(): void {
    this.wake?.();
  }

  /** Claims what is due (up to `concurrency` jobs), runs it and waits for it; returns how many ran. */
  async runOnce(): Promise<number> {
    const jobs = await this.opts.queue.claim({
      workerId: this.opts.workerId,
      limit: Math.max(1, this.opts.concurrency),
      leaseMs: this.opts.leaseMs,
      kinds: this.claimable(),
      maxRunningPerOrg: this.opts.maxRunningPerOrg,
    });
    await Promise.all(jobs.map((job) => this.track(job)));
    return jobs.length;
  }

  /** `runOnce` until nothing is due; returns how many ran. Jobs waiting for their backoff are not due. */
  async drain(maxRounds = 1_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxRounds; i++) {
      const n = await this.runOnce();
      if (n === 0) break;
      total += n;
    }
    return total;
  }

  /** Deletes succeeded jobs older than the retention period; returns how many. */
  async prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.opts.queue.pruneSucceeded(this.opts.retentionMs, PRUNE_BATCH);
      total += n;
      if (n < PRUNE_BATCH) return total;
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      const free = this.opts.concurrency - this.inFlight.size;
      let claimed = 0;
      try {
        if (free > 0) {
          const jobs = await this.opts.queue.claim({
            workerId: this.opts.workerId,
            limit: free,
            leaseMs: this.opts.leaseMs,
            kinds: this.claimable(),
            maxRunningPerOrg: this.opts.maxRunningPerOrg,
          });
          for (const job of jobs) void this.track(job);
          claimed = jobs.length;
        }
        if (Date.now() - this.lastPruneAt >= PRUNE_EVERY_MS) {
          this.lastPruneAt = Date.now();
          await this.prune();
        }
        failures = 0;
      } catch (e) {
        failures += 1;
        this.opts.onError?.(e);
      }
      // Poll again at once while jobs keep coming and slots are free; else
      // sleep until the poll interval passes or a running job finishes. While
      // the store fails, poll less often (up to a minute) instead of spamming it.
      const pause = failures === 0 ? this.opts.pollMs : Math.min(60_000, this.opts.pollMs * 2 ** failures);
      if (this.running && (claimed < free || free <= 0 || failures > 0)) await this.sleep(pause);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(), ms);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
    });
  }

  private track(job: Job): Promise<void> {
    const p = this.execute(job).finally(() => {
      this.inFlight.delete(p);
      this.wake?.();
    });
    this.inFlight.add(p);
    return p;
  }

  /** Never rejects: a failure of the queue itself leaves the lease to expire and the job to be reclaimed. */
  private async execute(job: Job): Promise<void> {
    const { queue, workerId } = this.opts;
    try {
      const handler = this.opts.handlers.get(job.kind);
      let failure: { error: unknown } | undefined;
      try {
        if (handler === undefined) throw new Error(`no handler for job kind ${job.kind}`);
        // A run may outlast its lease (a large repository's index): renew it every third of the lease.
        const heartbeat = setInterval(
          () => {
            queue.extendLease(job, workerId, this.opts.leaseMs).catch((e: unknown) => this.opts.onError?.(e));
          },
          Math.max(1, Math.floor(this.opts.leaseMs / 3)),
        );
        heartbeat.unref();
        try {
          await handler(job);
        } finally {
          clearInterval(heartbeat);
        }
      } catch (error) {
        failure = { error };
      }
      if (failure === undefined) {
        const held = await queue.complete(job, workerId);
        this.opts.onOutcome?.(job, held ? 'succeeded' : 'lost');
        return;
      }
      const final = failure.error instanceof AppError && !failure.error.retryable;
      const delay = final ? null : backoffMs(job.attempts, this.opts.backoff, this.opts.random);
      const state = await queue.fail(job, workerId, describeJobError(failure.error), delay);
      this.opts.onOutcome?.(job, state === undefined ? 'lost' : state === 'dead' ? 'dead' : 'retried', failure.error);
    } catch (e) {
      this.opts.onError?.(e);
    }
  }
}
