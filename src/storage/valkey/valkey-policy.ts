import { ReplyError } from 'ioredis';
import type { BreakerConfig } from '../../config/config.ts';
import { DependencyPolicy } from '../../ops/resilience.ts';

/**
 * The resilience policy for Valkey: one per process, shared by the cache and
 * the rate limiter, so they share one circuit. A reply error (WRONGTYPE, a
 * script error) means Valkey answered: it does not count toward the breaker.
 */
export function valkeyPolicy(opts: Partial<BreakerConfig> = {}): DependencyPolicy {
  return new DependencyPolicy({
    name: 'valkey',
    timeoutMs: opts.timeoutMs ?? 500,
    retries: opts.retries ?? 1,
    breakerThreshold: opts.breakerThreshold ?? 5,
    halfOpenAfterMs: opts.halfOpenAfterMs ?? 5_000,
    isFailure: (e) => !(e instanceof ReplyError),
    backoff: { initialDelayMs: 25, maxDelayMs: 250 },
  });
}

/**
 * ioredis' `retryStrategy`: reconnect forever in the background, backing off
 * exponentially to 5 s with full jitter, so Valkey coming back is picked up
 * without a restart and replicas do not reconnect in lockstep.
 */
export function reconnectDelay(times: number): number {
  const cap = Math.min(100 * 2 ** Math.min(times, 10), 5_000);
  return Math.round(cap / 2 + (Math.random() * cap) / 2);
}
