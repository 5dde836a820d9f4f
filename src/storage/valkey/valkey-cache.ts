import { Redis } from 'ioredis';
import type { DependencyPolicy } from '../../ops/resilience.ts';
import type { Cache } from '../../ports/cache.ts';
import { reconnectDelay, valkeyPolicy } from './valkey-policy.ts';

/**
 * The `Cache` port on Valkey (or Redis). Commands fail fast when the server is
 * away (no offline queue, short timeouts), because a cache miss is always
 * cheaper than a request stuck waiting for a cache. Every command goes through
 * the Valkey policy (timeout, circuit breaker, retries for reads only).
 *
 * Fail-open where that is safe: `getMany` answers misses and `setMany` drops
 * its writes when Valkey is down or the circuit is open. `setIfAbsent`,
 * `delete` and `ping` still reject — their callers must not mistake "not
 * checked" for "done" (the DPoP replay cache fails closed on it). The client
 * reconnects in the background, so caching resumes without a restart.
 */
export class ValkeyCache implements Cache {
  readonly kind = 'valkey' as const;
  /** The Valkey circuit; share it with the rate limiter through `opts.policy`. */
  readonly policy: DependencyPolicy;
  private readonly client: Redis;

  constructor(url: string, opts: { keyPrefix?: string; commandTimeoutMs?: number; policy?: DependencyPolicy } = {}) {
    const commandTimeout = opts.commandTimeoutMs ?? 500;
    this.policy = opts.policy ?? valkeyPolicy({ timeoutMs: commandTimeout });
    this.client = new Redis(url.replace(/^valkey(s?):/, 'redis$1:'), {
      keyPrefix: opts.keyPrefix ?? 'engram:',
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout,
      connectTimeout: 2_000,
      retryStrategy: reconnectDelay,
    });
    // Errors surface through commands; an unhandled 'error' event would crash.
    this.client.on('error', () => undefined);
  }

  async connect(): Promise<void> {
    await this.client.connect();
  }

  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return [];
    try {
      const values = await this.policy.execute(() => this.client.mgetBuffer(...keys), { idempotent: true });
      return values.map((v) => v ?? undefined);
    } catch {
      return keys.map(() => undefined);
    }
  }

  async setMany(entries: ReadonlyArray<readonly [string, Buffer]>, ttlSeconds: number): Promise<void> {
    if (entries.length === 0) return;
    // SET … EX overwrites with the same value: repeating it is harmless.
    await this.policy
      .execute(
        async () => {
          const p = this.client.pipeline();
          for (const [k, v] of entries) p.set(k, v, 'EX', ttlSeconds);
          const results = await p.exec();
          const failed = results?.find(([err]) => err !== null);
          if (failed?.[0]) throw failed[0];
        },
        { idempotent: true },
      )
      .catch(() => undefined);
  }

  async setIfAbsent(key: string, value: Buffer, ttlSeconds: number): Promise<boolean> {
    // Not retried: a first attempt that stored the key but lost its reply would read as "already there".
    return (await this.policy.execute(() => this.client.set(key, value, 'EX', ttlSeconds, 'NX'))) === 'OK';
  }

  async delete(key: string): Promise<void> {
    await this.policy.execute(() => this.client.del(key), { idempotent: true });
  }

  async ping(): Promise<void> {
    await this.policy.execute(() => this.client.ping());
  }

  async close(): Promise<void> {
    this.client.disconnect();
    await Promise.resolve();
  }
}
