import { errors } from '../errors.ts';
import type { RateLimitDecision, TokenBucket } from '../ports/rate-limiter.ts';

/** Refuses buckets and costs that could never behave (NaN, zero rate, cost above capacity). */
export function checkTake(bucket: TokenBucket, cost: number): void {
  if (!Number.isFinite(bucket.capacity) || bucket.capacity < 1) {
    throw errors.validation('bucket capacity must be at least 1');
  }
  if (!Number.isFinite(bucket.refillPerSecond) || bucket.refillPerSecond <= 0) {
    throw errors.validation('bucket refillPerSecond must be positive');
  }
  if (!Number.isFinite(cost) || cost <= 0 || cost > bucket.capacity) {
    throw errors.validation('cost must be positive and at most the bucket capacity');
  }
}

/** Tokens after refilling `tokens` for `elapsedMs`, never above capacity. */
export function refill(bucket: TokenBucket, tokens: number, elapsedMs: number): number {
  return Math.min(bucket.capacity, tokens + (Math.max(0, elapsedMs) * bucket.refillPerSecond) / 1000);
}

/** The client-facing numbers for a bucket left with `tokens` after a take. */
export function decide(bucket: TokenBucket, tokens: number, allowed: boolean, cost: number): RateLimitDecision {
  const rate = bucket.refillPerSecond;
  return {
    allowed,
    remaining: Math.max(0, Math.floor(tokens)),
    resetSeconds: Math.max(0, Math.ceil((bucket.capacity - tokens) / rate)),
    retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((cost - tokens) / rate)),
  };
}
