import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  IsolatedCircuitError,
  TaskCancelledError,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  noop,
  retry,
  timeout,
  wrap,
  type CircuitBreakerPolicy,
  type IBackoff,
  type IPolicy,
} from 'cockatiel';

/**
 * One resilience policy per dependency (store, Valkey), built on cockatiel:
 * a per-attempt timeout, a consecutive-failure circuit breaker that half-opens
 * after a pause, and — for idempotent calls only — retries with exponential
 * backoff and decorrelated jitter. The embedder has its own equivalent inside
 * `ResilientEmbedder`.
 */

/** Circuit states as reported by health and metrics. */
export type BreakerState = 'closed' | 'half-open' | 'open' | 'isolated';

export interface DependencyPolicyOptions {
  /** The dependency's name in metrics, health reports and logs (`store`, `valkey`). */
  readonly name: string;
  /** Deadline per attempt; 0 leaves timing to the driver's own timeouts. */
  readonly timeoutMs: number;
  /** Extra attempts for calls marked idempotent; other calls are never retried. */
  readonly retries: number;
  /** Consecutive failures that open the circuit. */
  readonly breakerThreshold: number;
  /** How long the circuit stays open before one probe call is let through (half-open). */
  readonly halfOpenAfterMs: number;
  /**
   * Which errors mean "the dependency is failing" and count toward the breaker
   * (default: every error). Others — a constraint violation, a bad query —
   * pass through untouched and neither open nor close the circuit.
   */
  readonly isFailure?: (e: unknown) => boolean;
  /** Which failures are worth retrying (default: all of `isFailure`). */
  readonly isRetryable?: (e: unknown) => boolean;
  /** First and largest backoff between retries (default 50 ms … 1 s). */
  readonly backoff?: { readonly initialDelayMs: number; readonly maxDelayMs: number };
}

/** Options of one call through a {@link DependencyPolicy}. */
export interface CallOptions {
  /** True only when repeating the call cannot change the outcome (a read, a PING, a connection attempt). */
  readonly idempotent?: boolean;
}

/** What health reports show about a dependency's circuit. */
export interface BreakerSnapshot {
  readonly state: BreakerState;
  readonly since: string | null;
  readonly threshold: number;
  readonly halfOpenAfterMs: number;
}

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'isolated',
};

/** True when a call was refused because the circuit is open (or isolated). */
export const isBrokenCircuit = (e: unknown): boolean =>
  e instanceof BrokenCircuitError || e instanceof IsolatedCircuitError;

/** True when a call was abandoned by the policy's timeout. */
export const isPolicyTimeout = (e: unknown): boolean => e instanceof TaskCancelledError;

/**
 * Timeout, circuit breaker and (idempotent calls only) retry for one
 * dependency. Share one instance between every client of the same dependency,
 * so they share one circuit.
 */
export class DependencyPolicy {
  readonly name: string;
  private readonly breaker: CircuitBreakerPolicy;
  private readonly once: IPolicy;
  private readonly withRetries: IPolicy;
  private readonly listeners = new Set<(to: BreakerState, from: BreakerState) => void>();
  private current: BreakerState = 'closed';
  private changedAt: Date | undefined;

  constructor(private readonly opts: DependencyPolicyOptions) {
    this.name = opts.name;
    const isFailure = opts.isFailure ?? (() => true);
    const counts = (e: unknown) => isPolicyTimeout(e) || isFailure(e);
    this.breaker = circuitBreaker(handleWhen(counts), {
      halfOpenAfter: opts.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(opts.breakerThreshold),
    });
    this.breaker.onStateChange((s) => {
      const from = this.current;
      this.current = STATE_NAMES[s];
      this.changedAt = new Date();
      for (const l of this.listeners) l(this.current, from);
    });
    const deadline = opts.timeoutMs > 0 ? timeout(opts.timeoutMs, TimeoutStrategy.Aggressive) : noop;
    this.once = wrap(this.breaker, deadline);
    const retryable = opts.isRetryable ?? counts;
    // An open circuit will not close by retrying; cockatiel's ExponentialBackoff
    // uses decorrelated jitter, so replicas do not retry in lockstep.
    const retryPolicy = retry(
      handleWhen((e) => !isBrokenCircuit(e) && (isPolicyTimeout(e) || retryable(e))),
      {
        maxAttempts: opts.retries,
        backoff: new ExponentialBackoff({
          initialDelay: opts.backoff?.initialDelayMs ?? 50,
          maxDelay: opts.backoff?.maxDelayMs ?? 1_000,
        }),
      },
    );
    this.withRetries = opts.retries > 0 ? wrap(retryPolicy, this.once) : this.once;
  }

  /** The circuit's state now. */
  get state(): BreakerState {
    return STATE_NAMES[this.breaker.state];
  }

  /** For health details: state, since when, and the thresholds in force. */
  snapshot(): BreakerSnapshot {
    return {
      state: this.state,
      since: this.changedAt?.toISOString() ?? null,
      threshold: this.opts.breakerThreshold,
      halfOpenAfterMs: this.opts.halfOpenAfterMs,
    };
  }

  /**
   * Whole seconds until the open circuit lets a probe through (at least 1),
   * for a `Retry-After` header; 1 when the circuit is not open.
   */
  retryAfterSeconds(): number {
    if (this.current !== 'open' || this.changedAt === undefined) return 1;
    const left = this.changedAt.getTime() + this.opts.halfOpenAfterMs - Date.now();
    return Math.max(1, Math.ceil(left / 1000));
  }

  /** Called on every state change (metrics count transitions); returns an unsubscribe function. */
  onTransition(listener: (to: BreakerState, from: BreakerState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs `fn` under the policy. Rejects with cockatiel's `BrokenCircuitError`
   * while the circuit is open (see {@link isBrokenCircuit}) and with
   * `TaskCancelledError` on timeout (see {@link isPolicyTimeout}); `fn`
   * receives an AbortSignal that fires on timeout.
   */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>, call: CallOptions = {}): Promise<T> {
    const policy = call.idempotent === true ? this.withRetries : this.once;
    // A signal per call: cockatiel's default is one shared signal, and many calls in flight
    // would pile abort listeners onto it (MaxListenersExceededWarning).
    return policy.execute(({ signal }) => fn(signal), new AbortController().signal);
  }
}

export interface WaitOptions {
  /** Give up after this long (0: one attempt only). */
  readonly timeoutMs: number;
  /** First and largest pause between attempts (default 250 ms … 5 s), jittered. */
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Errors that will not go away by waiting (bad password): fail at once. Default: none. */
  readonly isFatal?: (e: unknown) => boolean;
  /** Told before each pause, to log progress. */
  readonly onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** For tests. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Startup: calls `attempt` until it succeeds, pausing with exponential backoff
 * and decorrelated jitter between tries, for at most `timeoutMs`. Rethrows
 * the last error once the time is up (or at once for a fatal one), so the
 * caller can name the dependency in a one-line message.
 */
export async function waitForDependency<T>(attempt: () => Promise<T>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let backoff: IBackoff<unknown> = new ExponentialBackoff({
    initialDelay: opts.initialDelayMs ?? 250,
    maxDelay: opts.maxDelayMs ?? 5_000,
  }).next();
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      const left = deadline - Date.now();
      if (left <= 0 || opts.isFatal?.(error) === true) throw error;
      const delayMs = Math.max(1, Math.min(Math.round(backoff.duration), left));
      opts.onRetry?.({ attempt: n, delayMs, error });
      await sleep(delayMs);
      backoff = backoff.next(undefined);
    }
  }
}
