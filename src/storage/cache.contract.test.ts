import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cache } from '../ports/cache.ts';
import { LocalCache } from './local/local-cache.ts';
import { ValkeyCache } from './valkey/valkey-cache.ts';

/**
 * One contract for every `Cache` implementation. LocalCache always runs;
 * ValkeyCache runs when VALKEY_URL is set (the `integration` project).
 */
interface Variant {
  readonly name: string;
  readonly create: () => Promise<Cache>;
}

const valkeyUrl = process.env.VALKEY_URL;
// A prefix per run, so parallel or repeated runs never see each other's keys.
const runPrefix = `engram-test:cache-contract:${randomUUID()}:`;

const variants: Variant[] = [{ name: LocalCache.name, create: () => Promise.resolve(new LocalCache()) }];
if (valkeyUrl !== undefined && valkeyUrl !== '') {
  variants.push({
    name: ValkeyCache.name,
    create: async () => {
      const cache = new ValkeyCache(valkeyUrl, { keyPrefix: runPrefix, commandTimeoutMs: 2_000 });
      await cache.connect();
      return cache;
    },
  });
} else {
  // eslint-disable-next-line no-console -- the brief asks for a visible reason when a variant does not run
  console.info(
    'cache.contract: ValkeyCache variant skipped: VALKEY_URL is not set ' +
      '(run `VALKEY_URL=redis://127.0.0.1:6380 npx vitest run --project integration src/storage/cache.contract.test.ts`)',
  );
}

describe.each(variants)('$name', ({ create }) => {
  let cache: Cache;
  const written: string[] = [];
  const key = (name: string) => {
    const k = `${randomUUID()}:${name}`;
    written.push(k);
    return k;
  };

  beforeAll(async () => {
    cache = await create();
  });

  afterAll(async () => {
    if (cache === undefined) return;
    for (const k of written) await cache.delete(k);
    await cache.close();
  });

  describe('getMany', () => {
    it('returns undefined for misses and the buffers set by setMany, in key order', async () => {
      const [a, b, c, missing] = [key('a'), key('b'), key('c'), key('missing')];
      const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte, incl. \0 \r \n
      await cache.setMany(
        [
          [a, Buffer.from('alpha')],
          [b, binary],
          [c, Buffer.alloc(0)],
        ],
        60,
      );
      const got = await cache.getMany([missing, c, a, b, missing]);
      expect(got).toHaveLength(5);
      expect(got[0]).toBeUndefined();
      expect(got[1]).toEqual(Buffer.alloc(0));
      expect(got[2]).toEqual(Buffer.from('alpha'));
      expect(got[3]).toEqual(binary);
      expect(got[4]).toBeUndefined();
      for (const v of got.slice(1, 4)) expect(Buffer.isBuffer(v)).toBe(true);
    });

    it('returns an empty array for no keys', async () => {
      expect(await cache.getMany([])).toEqual([]);
    });

    it('returns the latest value after a key is set twice', async () => {
      const k = key('overwrite');
      await cache.setMany([[k, Buffer.from('first')]], 60);
      await cache.setMany([[k, Buffer.from('second')]], 60);
      expect(await cache.getMany([k])).toEqual([Buffer.from('second')]);
    });

    it('returns undefined once the TTL has passed, and the value for a longer TTL', async () => {
      const [short, long] = [key('short-ttl'), key('long-ttl')];
      await cache.setMany([[short, Buffer.from('gone soon')]], 1);
      await cache.setMany([[long, Buffer.from('still here')]], 60);
      expect(await cache.getMany([short])).toEqual([Buffer.from('gone soon')]);
      await sleep(1_200);
      expect(await cache.getMany([short, long])).toEqual([undefined, Buffer.from('still here')]);
    });
  });

  describe('setMany', () => {
    it('returns without error for no entries', async () => {
      await expect(cache.setMany([], 60)).resolves.toBeUndefined();
    });
  });

  describe('setIfAbsent', () => {
    it('stores only the first of two writers, atomically under concurrency', async () => {
      const k = key('nx');
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => cache.setIfAbsent(k, Buffer.from(`w${i}`), 60)),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect(await cache.getMany([k])).toEqual([Buffer.from(`w${winner}`)]);
    });

    it('stores again once the earlier value expired', async () => {
      const k = key('nx-expiry');
      expect(await cache.setIfAbsent(k, Buffer.from('a'), 1)).toBe(true);
      expect(await cache.setIfAbsent(k, Buffer.from('b'), 1)).toBe(false);
      await sleep(1_200);
      expect(await cache.setIfAbsent(k, Buffer.from('c'), 60)).toBe(true);
      expect(await cache.getMany([k])).toEqual([Buffer.from('c')]);
    });
  });

  describe('delete', () => {
    it('removes the key and leaves the others', async () => {
      const [gone, kept] = [key('gone'), key('kept')];
      await cache.setMany(
        [
          [gone, Buffer.from('x')],
          [kept, Buffer.from('y')],
        ],
        60,
      );
      await cache.delete(gone);
      expect(await cache.getMany([gone, kept])).toEqual([undefined, Buffer.from('y')]);
    });

    it('returns without error for a missing key', async () => {
      await expect(cache.delete(key('never-set'))).resolves.toBeUndefined();
    });
  });

  describe('ping', () => {
    it('resolves', async () => {
      await expect(cache.ping()).resolves.toBeUndefined();
    });
  });
});
