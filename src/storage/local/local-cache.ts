import type { Cache } from '../../ports/cache.ts';

/** In-process LRU with TTL: the single-node default for the `Cache` port. */
export class LocalCache implements Cache {
  readonly kind = 'local' as const;
  private readonly map = new Map<string, { value: Buffer; expiresAt: number }>();
  constructor(private readonly maxEntries = 20_000) {}

  getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    const now = Date.now();
    return Promise.resolve(
      keys.map((k) => {
        const e = this.map.get(k);
        if (e === undefined) return undefined;
        if (e.expiresAt <= now) {
          this.map.delete(k);
          return undefined;
        }
        // Re-insert to mark as most recently used.
        this.map.delete(k);
        this.map.set(k, e);
        return e.value;
      }),
    );
  }

  setMany(entries: ReadonlyArray<readonly [string, Buffer]>, ttlSeconds: number): Promise<void> {
    const expiresAt = Date.now() + ttlSeconds * 1000;
    for (const [k, value] of entries) {
      this.map.delete(k);
      this.map.set(k, { value, expiresAt });
      if (this.map.size > this.maxEntries) {
        const oldest = this.map.keys().next();
        if (oldest.done !== true) this.map.delete(oldest.value);
      }
    }
    return Promise.resolve();
  }

  setIfAbsent(key: string, value: Buffer, ttlSeconds: number): Promise<boolean> {
    const e = this.map.get(key);
    if (e !== undefined && e.expiresAt > Date.now()) return Promise.resolve(false);
    return this.setMany([[key, value]], ttlSeconds).then(() => true);
  }

  delete(key: string): Promise<void> {
    this.map.delete(key);
    return Promise.resolve();
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.map.clear();
    return Promise.resolve();
  }
}
