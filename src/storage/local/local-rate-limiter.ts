import type { RateLimitDecision, RateLimiter, TokenBucket } from '../../ports/rate-limiter.ts';
import { checkTake, decide, refill } from '../token-bucket.ts';

/**
 * Token buckets in this process: the single-node default. Bounded: past
 * `maxKeys`, the least recently used bucket is forgotten (it starts full
 * again), so memory stays flat whatever the number of keys.
 */
export class LocalRateLimiter implements RateLimiter {
  readonly kind = 'local' as const;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly opts: { maxKeys?: number; now?: () => number } = {}) {}

  async take(key: string, bucket: TokenBucket, cost = 1): Promise<RateLimitDecision> {
    checkTake(bucket, cost);
    const now = (this.opts.now ?? Date.now)();
    const prev = this.buckets.get(key);
    let tokens = prev === undefined ? bucket.capacity : refill(bucket, prev.tokens, now - prev.at);
    const allowed = tokens >= cost;
    if (allowed) tokens -= cost;
    // Re-insert so Map order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens, at: Math.max(now, prev?.at ?? now) });
    if (this.buckets.size > (this.opts.maxKeys ?? 100_000)) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
    return decide(bucket, tokens, allowed, cost);
  }

  close(): Promise<void> {
    this.buckets.clear();
    return Promise.resolve();
  }
}
