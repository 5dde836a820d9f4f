import { AppError } from '../../errors.ts';
import type { RateLimitDecision, RateLimiter } from '../../ports/rate-limiter.ts';
import type { QuotaService, RateQuota } from './quota.service.ts';
import type { RateClass } from './quota.types.ts';

/** One charge that the limiter answered: the org's quota and the bucket's verdict. */
export interface RateCharge {
  readonly quota: RateQuota;
  readonly decision: RateLimitDecision;
}

/** A take: the verdict, or why there is none (the limiter or the quota lookup failed). */
export type RateTake = RateCharge | { readonly unavailable: unknown };

export interface RateGateDeps {
  readonly limiter: RateLimiter;
  readonly quotas: QuotaService;
  /** Told on every refusal, e.g. to count it in metrics. */
  readonly onReject?: ((cls: RateClass) => void) | undefined;
  /** Told when `charge` let a call through unlimited because the limiter or quota lookup failed (fail open). */
  readonly onUnavailable?: ((cls: RateClass, err: unknown) => void) | undefined;
}

/**
 * The org's token buckets per rate class (key `${orgId}:${class}`), one gate
 * for every face: the REST plugin charges each request (or each item of a
 * bulk write), the MCP server each tool call, so a JSON-RPC batch of 100
 * `remember`s costs 100 write tokens, as 100 POSTs would.
 */
export class RateGate {
  constructor(private readonly deps: RateGateDeps) {}

  /**
   * Takes `cost` tokens of `orgId`'s `cls` bucket. Resolves to the verdict
   * (the caller decides how to present a refusal), or to the error that kept
   * the limiter from answering (the caller decides to fail open). Throws
   * PAYLOAD_TOO_LARGE for a cost above the bucket's capacity, which no wait
   * could ever pay.
   */
  async take(orgId: string, cls: RateClass, cost: number): Promise<RateTake> {
    let quota: RateQuota;
    let decision: RateLimitDecision;
    try {
      quota = await this.deps.quotas.limitFor(orgId, cls);
      if (cost > quota.bucket.capacity) {
        throw new AppError(
          'PAYLOAD_TOO_LARGE',
          `This request costs ${cost} ${cls} tokens but this org's ${cls} burst is ${quota.bucket.capacity}; send at most ${quota.bucket.capacity} items per request`,
          { details: { class: cls, cost, maxItems: quota.bucket.capacity, perMinute: quota.perMinute } },
        );
      }
      decision = await this.deps.limiter.take(`${orgId}:${cls}`, quota.bucket, cost);
    } catch (err) {
      if (err instanceof AppError && err.code === 'PAYLOAD_TOO_LARGE') throw err;
      return { unavailable: err };
    }
    if (!decision.allowed) this.deps.onReject?.(cls);
    return { quota, decision };
  }

  /** Takes like `take`; throws RATE_LIMITED (with `retryAfterSeconds`) when refused, fails open when unavailable. */
  async charge(orgId: string, cls: RateClass, cost: number, what = 'requests'): Promise<void> {
    const taken = await this.take(orgId, cls, cost);
    if ('unavailable' in taken) this.deps.onUnavailable?.(cls, taken.unavailable);
    else if (!taken.decision.allowed) throw rateLimited(cls, taken, cost, what);
  }
}

/** The 429 of a refused charge, with what a client needs to pace itself. */
export function rateLimited(cls: RateClass, { quota, decision }: RateCharge, cost: number, what: string): AppError {
  return new AppError(
    'RATE_LIMITED',
    `Too many ${cls} ${what} for this org; retry in ${decision.retryAfterSeconds} s`,
    {
      details: {
        class: cls,
        limit: quota.bucket.capacity,
        perMinute: quota.perMinute,
        ...(cost === 1 ? {} : { cost }),
        retryAfterSeconds: decision.retryAfterSeconds,
      },
    },
  );
}
