import { errors } from '../../errors.ts';
import type { TokenBucket } from '../../ports/rate-limiter.ts';
import type { SystemStore } from '../../ports/tenant-db.ts';
import { RATE_CLASSES, type OrgQuotas, type PerMinute, type RateClass } from './quota.types.ts';

const CACHE_MS = 30_000;
const MAX_PER_MINUTE = 1_000_000;
const NO_OVERRIDES: OrgQuotas = { read: null, write: null, search: null, admin: null, import: null };

/** One class's effective limit for one org, and the token bucket that enforces it. */
export interface RateQuota {
  readonly perMinute: number;
  readonly bucket: TokenBucket;
}

/**
 * Rate-limit quotas: configured defaults per route class, overridable per org.
 * The limiter asks on every request, so overrides are cached for `cacheMs`; a
 * change reaches other replicas within that time (this replica at once).
 */
export class QuotaService {
  private readonly cache = new Map<string, { quotas: Promise<OrgQuotas>; until: number }>();

  constructor(
    private readonly deps: {
      system: SystemStore;
      /** Requests per minute per class when an org has no override. */
      defaults: PerMinute;
      /** The burst, as seconds of the sustained rate: capacity = perMinute × burstSeconds / 60. */
      burstSeconds: number;
      cacheMs?: number;
      now?: () => number;
    },
  ) {}

  /** The limit that applies to `orgId` for routes of class `cls`. */
  async limitFor(orgId: string, cls: RateClass): Promise<RateQuota> {
    const perMinute = (await this.overridesOf(orgId))[cls] ?? this.deps.defaults[cls];
    return {
      perMinute,
      bucket: {
        capacity: Math.max(1, Math.round((perMinute * this.deps.burstSeconds) / 60)),
        refillPerSecond: perMinute / 60,
      },
    };
  }

  /** The org's overrides (null: the default applies). */
  overridesOf(orgId: string): Promise<OrgQuotas> {
    const now = (this.deps.now ?? Date.now)();
    const hit = this.cache.get(orgId);
    if (hit !== undefined && hit.until > now) return hit.quotas;
    // The promise is cached, so concurrent misses share one lookup.
    const quotas = this.deps.system.findOrgQuotas(orgId).then((q) => q ?? NO_OVERRIDES);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(orgId, { quotas, until: now + (this.deps.cacheMs ?? CACHE_MS) });
    void quotas.catch(() => {
      if (this.cache.get(orgId)?.quotas === quotas) this.cache.delete(orgId);
    });
    return quotas;
  }

  /** Changes some of an org's overrides; `null` returns a class to the default. */
  async override(orgId: string, patch: Partial<OrgQuotas>): Promise<OrgQuotas> {
    for (const cls of RATE_CLASSES) {
      const v = patch[cls];
      if (v !== undefined && v !== null && (!Number.isInteger(v) || v < 1 || v > MAX_PER_MINUTE)) {
        throw errors.validation(`${cls} must be a whole number of requests per minute from 1 to ${MAX_PER_MINUTE}`, {
          field: cls,
        });
      }
    }
    if ((await this.deps.system.findOrgById(orgId)) === undefined) throw errors.notFound('org', orgId);
    this.cache.delete(orgId);
    const current = await this.overridesOf(orgId);
    const merged = Object.fromEntries(RATE_CLASSES.map((c) => [c, patch[c] === undefined ? current[c] : patch[c]]));
    const next = await this.deps.system.upsertOrgQuotas(orgId, merged as OrgQuotas);
    this.cache.set(orgId, {
      quotas: Promise.resolve(next),
      until: (this.deps.now ?? Date.now)() + (this.deps.cacheMs ?? CACHE_MS),
    });
    return next;
  }
}
