import { errors } from '../../errors.ts';
import type { Cache } from '../../ports/cache.ts';
import { LocalCache } from './local-cache.ts';

export interface LocalReplayCachesOptions {
  /** Entries per partition (tenant); its own oldest go first past it. */
  readonly perPartition: number;
  /** Partitions at once. */
  readonly maxPartitions: number;
  /** How long an entry must be kept: a partition untouched this long holds nothing live and may go. Default 125 s. */
  readonly ttlMs?: number;
  readonly now?: () => number;
}

/**
 * The in-process DPoP replay cache, one bounded LRU per tenant, so a tenant
 * that floods proofs evicts only its own jtis, never another's. Past
 * `maxPartitions`, a partition idle for longer than the entries live is
 * dropped (it holds nothing that still matters); if every partition is live,
 * `cacheFor` refuses with UNAVAILABLE — failing closed, as the verifier does
 * when the cache is down — rather than forget jtis that could be replayed.
 */
export class LocalReplayCaches {
  private readonly partitions = new Map<string, { cache: LocalCache; usedAt: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: LocalReplayCachesOptions) {
    this.now = opts.now ?? Date.now;
  }

  cacheFor(partition: string): Cache {
    const now = this.now();
    const found = this.partitions.get(partition);
    if (found !== undefined) {
      // Re-insert so Map order is least recently used first.
      this.partitions.delete(partition);
      this.partitions.set(partition, { cache: found.cache, usedAt: now });
      return found.cache;
    }
    if (this.partitions.size >= this.opts.maxPartitions) {
      const [oldest, entry] = this.partitions.entries().next().value ?? [];
      if (oldest === undefined || entry === undefined || now - entry.usedAt < (this.opts.ttlMs ?? 125_000)) {
        throw errors.unavailable('The DPoP replay cache');
      }
      this.partitions.delete(oldest);
    }
    const cache = new LocalCache(this.opts.perPartition);
    this.partitions.set(partition, { cache, usedAt: now });
    return cache;
  }
}
