import type { RateLimiter, TokenBucket } from '../ports/rate-limiter.ts';

export interface AuthFailureLimiterOptions {
  /** The shared token buckets (Valkey across replicas, else in-process). */
  readonly limiter: RateLimiter;
  /** Failed authentications per minute per source; the burst is one minute's worth. */
  readonly perMinute: number;
  /** Sources remembered as blocked at once; past it the oldest block is forgotten. Default 100,000. */
  readonly maxBlocked?: number;
  /** Told when the limiter backend fails (the failure is then not counted: fail open). */
  readonly onError?: (err: unknown) => void;
  readonly now?: () => number;
}

/**
 * Failed authentication per client address. A failure costs one token of the
 * address's bucket (`authfail:<source>` in the shared limiter, so replicas
 * count together); once the bucket is empty the address is blocked in this
 * process until a token is back, and `retryAfter` — a map lookup, no I/O —
 * lets the auth hook refuse it before any credential is looked up or any
 * audit entry written. A valid credential from a blocked address waits too:
 * the server cannot tell it from the next guess without the lookup the block
 * exists to avoid.
 */
export class AuthFailureLimiter {
  readonly bucket: TokenBucket;
  private readonly blocked = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly opts: AuthFailureLimiterOptions) {
    if (!(opts.perMinute >= 1)) throw new TypeError('AuthFailureLimiter needs perMinute >= 1');
    this.bucket = { capacity: opts.perMinute, refillPerSecond: opts.perMinute / 60 };
    this.now = opts.now ?? Date.now;
  }

  /** Whole seconds until `address` may authenticate again; 0 when it may now. */
  retryAfter(address: string): number {
    const key = sourceOf(address);
    const until = this.blocked.get(key);
    if (until === undefined) return 0;
    const left = until - this.now();
    if (left <= 0) {
      this.blocked.delete(key);
      return 0;
    }
    return Math.max(1, Math.ceil(left / 1000));
  }

  /** Counts one failed authentication from `address`; resolves to the seconds it must now wait (0: none). */
  async fail(address: string): Promise<number> {
    const key = sourceOf(address);
    let wait: number;
    try {
      const d = await this.opts.limiter.take(`authfail:${key}`, this.bucket, 1);
      // The last token just went: the next attempt would be refused, so refuse it before its lookup.
      wait = !d.allowed
        ? d.retryAfterSeconds
        : d.remaining === 0
          ? Math.max(1, Math.ceil(1 / this.bucket.refillPerSecond))
          : 0;
    } catch (err) {
      this.opts.onError?.(err);
      return 0;
    }
    if (wait > 0) {
      this.blocked.delete(key);
      this.blocked.set(key, this.now() + wait * 1000);
      if (this.blocked.size > (this.opts.maxBlocked ?? 100_000)) {
        const oldest = this.blocked.keys().next();
        if (oldest.done !== true) this.blocked.delete(oldest.value);
      }
    }
    return wait;
  }
}

/**
 * The source a failure is charged to: an IPv4 address as is (also when
 * IPv4-mapped), an IPv6 address by its /64 — one host usually holds a whole
 * /64, and would otherwise get a fresh bucket per address.
 */
export function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = (ip.split('%')[0] ?? '').split('::');
  const left = head === '' ? [] : head.split(':');
  const right = ip.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
