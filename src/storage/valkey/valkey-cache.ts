import { Redis } from 'ioredis';
import type { Cache } from '../../ports/cache.ts';

/**
 * The `Cache` port on Valkey (or Redis). Commands fail fast when the server is
 * away (no offline queue, short timeouts), because a cache miss is always
 * cheaper than a request stuck waiting for a cache.
 */
export class ValkeyCache implements Cache {
  readonly kind = 'valkey' as const;
  private readonly client: Redis;

  constructor(url: string, opts: { keyPrefix?: string; commandTimeoutMs?: number } = {}) {
    this.client = new Redis(url.replace(/^valkey(s?):/, 'redis$1:'), {
      keyPrefix: opts.keyPrefix ?? 'engram:',
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: opts.commandTimeoutMs ?? 500,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    });
    // Errors surface through commands; an unhandled 'error' event would crash.
    this.client.on('error', () => undefined);
  }

  async connect(): Promise<void> {
    await this.client.connect();
  }

  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return [];
    const values = await this.client.mgetBuffer(...keys);
    return values.map((v) => v ?? undefined);
  }

  async setMany(entries: ReadonlyArray<readonly [string, Buffer]>, ttlSeconds: number): Promise<void> {
    if (entries.length === 0) return;
    const p = this.client.pipeline();
    for (const [k, v] of entries) p.set(k, v, 'EX', ttlSeconds);
    const results = await p.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed?.[0]) throw failed[0];
  }

  async setIfAbsent(key: string, value: Buffer, ttlSeconds: number): Promise<boolean> {
    return (await this.client.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK';
  }

  async delete(key: string): Promise<void> {
    await this.client.del(key);
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  async close(): Promise<void> {
    this.client.disconnect();
    await Promise.resolve();
  }
}
