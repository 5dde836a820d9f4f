import { Redis } from 'ioredis';
import type { DependencyPolicy } from '../../ops/resilience.ts';
import type { RateLimitDecision, RateLimiter, TokenBucket } from '../../ports/rate-limiter.ts';
import { checkTake, decide } from '../token-bucket.ts';
import { reconnectDelay, valkeyPolicy } from './valkey-policy.ts';

/**
 * One atomic token-bucket take. The clock is the server's own TIME, so
 * replicas whose clocks disagree still share one timeline. State is a hash
 * {tokens, ts}; it expires once the bucket would be full again, since a
 * missing bucket and a full one behave the same. Tokens are returned as a
 * string because Lua numbers become integers in a reply.
 */
const TAKE_LUA = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = tokens + (now - ts) * rate / 1000
  ts = now
end
if tokens > capacity then tokens = capacity end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * 1000 / rate) + 1000)
return {allowed, tostring(tokens)}
`;

type WithTake = Redis & {
  engramTakeTokens(key: string, capacity: string, rate: string, cost: string): Promise<[number, string]>;
};

export interface ValkeyRateLimiterOptions {
  readonly keyPrefix?: string;
  readonly commandTimeoutMs?: number;
  /** The Valkey circuit, shared with `ValkeyCache`; default: a policy of its own. */
  readonly policy?: DependencyPolicy;
  /**
   * Where `take` goes while Valkey is down or its circuit is open (typically a
   * `LocalRateLimiter`): limits then hold per replica instead of across
   * replicas, rather than not at all. Without one, `take` rejects and the
   * caller decides (the HTTP plugin fails open).
   */
  readonly fallback?: RateLimiter;
  /** Told on each take answered by the fallback (log and count it; must not throw). */
  readonly onFallback?: (err: unknown) => void;
}

/**
 * The `RateLimiter` port on Valkey (or Redis): every replica pointing at the
 * same server and key prefix shares the same buckets. Like `ValkeyCache`,
 * commands fail fast when the server is away and go through the Valkey
 * policy (timeout and circuit breaker; never retried: a take is not
 * idempotent). `take` then answers from `fallback`, or throws.
 */
export class ValkeyRateLimiter implements RateLimiter {
  readonly kind = 'valkey' as const;
  readonly policy: DependencyPolicy;
  private readonly client: WithTake;

  constructor(
    url: string,
    private readonly opts: ValkeyRateLimiterOptions = {},
  ) {
    const commandTimeout = opts.commandTimeoutMs ?? 250;
    this.policy = opts.policy ?? valkeyPolicy({ timeoutMs: commandTimeout });
    const client = new Redis(url.replace(/^valkey(s?):/, 'redis$1:'), {
      keyPrefix: `${opts.keyPrefix ?? 'engram:'}rl:`,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout,
      connectTimeout: 2_000,
      retryStrategy: reconnectDelay,
    });
    // Errors surface through commands; an unhandled 'error' event would crash.
    client.on('error', () => undefined);
    // defineCommand runs EVALSHA and falls back to EVAL when the script cache was flushed.
    client.defineCommand('engramTakeTokens', { numberOfKeys: 1, lua: TAKE_LUA });
    this.client = client as WithTake;
  }

  async connect(): Promise<void> {
    await this.client.connect();
  }

  async take(key: string, bucket: TokenBucket, cost = 1): Promise<RateLimitDecision> {
    checkTake(bucket, cost);
    let reply: [number, string];
    try {
      reply = await this.policy.execute(() =>
        this.client.engramTakeTokens(key, String(bucket.capacity), String(bucket.refillPerSecond), String(cost)),
      );
    } catch (err) {
      const fallback = this.opts.fallback;
      if (fallback === undefined) throw err;
      this.opts.onFallback?.(err);
      return fallback.take(key, bucket, cost);
    }
    const [allowed, tokens] = reply;
    return decide(bucket, Number(tokens), allowed === 1, cost);
  }

  async close(): Promise<void> {
    await this.opts.fallback?.close();
    this.client.disconnect();
    await Promise.resolve();
  }
}
