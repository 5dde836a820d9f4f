/**
 * A token bucket: holds up to `capacity` tokens (the burst) and refills
 * continuously at `refillPerSecond` (the sustained rate).
 */
export interface TokenBucket {
  readonly capacity: number;
  readonly refillPerSecond: number;
}

/** The outcome of one `take`, with what a client needs to pace itself. */
export interface RateLimitDecision {
  readonly allowed: boolean;
  /** Whole tokens left after this take. */
  readonly remaining: number;
  /** Seconds until the bucket is full again (draft-ietf-httpapi-ratelimit-headers `RateLimit-Reset`). */
  readonly resetSeconds: number;
  /** Seconds until a take of the same cost can succeed; 0 when allowed. */
  readonly retryAfterSeconds: number;
}

/**
 * Rate limiting by token bucket, one bucket per key. Implementations:
 * `LocalRateLimiter` (in-process, per replica) and `ValkeyRateLimiter`
 * (atomic across replicas). A bucket nobody touched starts full. `take`
 * rejects (throws) when the backend is unreachable: whether to fail open is
 * the caller's policy, not the limiter's.
 */
export interface RateLimiter {
  readonly kind: 'local' | 'valkey';
  /** Takes `cost` (default 1) tokens from `key`'s bucket if it holds that many. */
  take(key: string, bucket: TokenBucket, cost?: number): Promise<RateLimitDecision>;
  close(): Promise<void>;
}
