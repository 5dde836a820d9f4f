import { describe, expect, it } from 'vitest';
import { LocalRateLimiter } from '../storage/local/local-rate-limiter.ts';
import { AuthFailureLimiter, sourceOf } from './failure-limiter.ts';

describe(AuthFailureLimiter.name, () => {
  it('blocks an address once its failures are used up, until a token is back', async () => {
    let now = 1_000_000;
    const limiter = new AuthFailureLimiter({
      limiter: new LocalRateLimiter({ now: () => now }),
      perMinute: 2,
      now: () => now,
    });
    expect(await limiter.fail('10.0.0.1')).toBe(0);
    expect(limiter.retryAfter('10.0.0.1')).toBe(0);
    // The last token: the next attempt is refused before it is looked at.
    expect(await limiter.fail('10.0.0.1')).toBe(30);
    expect(limiter.retryAfter('10.0.0.1')).toBe(30);
    expect(limiter.retryAfter('10.0.0.2')).toBe(0);
    now += 30_000;
    expect(limiter.retryAfter('10.0.0.1')).toBe(0);
  });

  it('charges IPv6 addresses by their /64 and IPv4-mapped ones as IPv4', () => {
    expect(sourceOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('::1')).toBe('0:0:0:0::/64');
    expect(sourceOf('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('192.0.2.1')).toBe('192.0.2.1');
  });
});
