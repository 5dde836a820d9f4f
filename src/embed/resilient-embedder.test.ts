import { TaskCancelledError } from 'cockatiel';
import { describe, expect, it } from 'vitest';
import { AppError, errors } from '../errors.ts';
import type { Cache } from '../ports/cache.ts';
import { EMBED_MAX_BATCH, EMBED_MAX_CHARS, type Embedder } from '../ports/embedder.ts';
import { LocalCache } from '../storage/local/local-cache.ts';
import { BuiltinEmbedder } from './builtin.embedder.ts';
import { ResilientEmbedder, type ResilienceOptions } from './resilient-embedder.ts';

const DIM = 16;

type Behaviour = (batch: readonly string[]) => Promise<Float32Array[]>;

/**
 * A test double of an embedding provider: it records every batch it receives
 * and answers with the builtin embedder's vectors unless told otherwise.
 */
class CountingEmbedder implements Embedder {
  readonly provider = 'openai' as const;
  readonly dimension = DIM;
  readonly batches: string[][] = [];
  private readonly reference: BuiltinEmbedder;

  constructor(
    readonly model = 'counting-model',
    private readonly behaviour?: Behaviour,
  ) {
    this.reference = new BuiltinEmbedder(model, DIM);
  }

  embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.batches.push([...texts]);
    return this.behaviour?.(texts) ?? this.reference.embed(texts);
  }

  get calls(): number {
    return this.batches.length;
  }
}

/** A cache whose every operation fails, as a Valkey that went away would. */
class FailingCache implements Cache {
  readonly kind = 'valkey' as const;
  setIfAbsent(): Promise<boolean> {
    return Promise.reject(new Error('cache down'));
  }
  getMany(): Promise<Array<Buffer | undefined>> {
    return Promise.reject(new Error('cache down'));
  }
  setMany(): Promise<void> {
    return Promise.reject(new Error('cache down'));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error('cache down'));
  }
  ping(): Promise<void> {
    return Promise.reject(new Error('cache down'));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const FAST: ResilienceOptions = { timeoutMs: 5_000, retries: 0, breakerThreshold: 5, halfOpenAfterMs: 60_000 };

const wrapped = (inner: Embedder, opts: Partial<ResilienceOptions> = {}, cache: Cache = new LocalCache()) =>
  new ResilientEmbedder(inner, cache, { ...FAST, ...opts });

const texts = (n: number, prefix = 'text') => Array.from({ length: n }, (_, i) => `${prefix} number ${i}`);

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

const alwaysFails: Behaviour = () => Promise.reject(new Error('provider down'));

describe(ResilientEmbedder.name, () => {
  describe('embed', () => {
    it('returns the inner vectors in input order, calling the inner embedder in batches of at most 32', async () => {
      const inner = new CountingEmbedder();
      const embedder = wrapped(inner);
      const inputs = texts(70);
      const vectors = await embedder.embed(inputs);
      expect(inner.batches.map((b) => b.length)).toEqual([32, 32, 6]);
      expect(Math.max(...inner.batches.map((b) => b.length))).toBeLessThanOrEqual(EMBED_MAX_BATCH);
      expect(inner.batches.flat()).toEqual(inputs);
      expect(vectors).toEqual(await new BuiltinEmbedder(inner.model, DIM).embed(inputs));
      expect(embedder.stats).toEqual({ cacheHits: 0, cacheMisses: 70, batches: 3 });
    });

    it('returns cached vectors for repeated inputs without calling the inner embedder', async () => {
      const inner = new CountingEmbedder();
      const embedder = wrapped(inner);
      const inputs = texts(70);
      const first = await embedder.embed(inputs);
      const callsAfterFirst = inner.calls;
      const second = await embedder.embed(inputs);
      expect(inner.calls).toBe(callsAfterFirst);
      expect(second).toEqual(first);
      expect(embedder.stats.cacheHits).toBe(70);
    });

    it('returns a mix of cached and fresh vectors, embedding only the misses', async () => {
      const inner = new CountingEmbedder();
      const embedder = wrapped(inner);
      await embedder.embed(['cached one', 'cached two']);
      inner.batches.length = 0;
      const vectors = await embedder.embed(['cached two', 'fresh', 'cached one']);
      expect(inner.batches).toEqual([['fresh']]);
      expect(vectors).toEqual(await new BuiltinEmbedder(inner.model, DIM).embed(['cached two', 'fresh', 'cached one']));
    });

    it('returns vectors cached per model: another model sharing the cache embeds again', async () => {
      const cache = new LocalCache();
      const a = new CountingEmbedder('model-a');
      const b = new CountingEmbedder('model-b');
      await wrapped(a, {}, cache).embed(['shared text']);
      await wrapped(b, {}, cache).embed(['shared text']);
      expect(a.calls).toBe(1);
      expect(b.calls).toBe(1);
    });

    it('returns vectors for inputs longer than 10,000 characters, passing them truncated to the inner embedder', async () => {
      const inner = new CountingEmbedder();
      const long = 'a'.repeat(EMBED_MAX_CHARS + 2_500);
      const exact = 'b'.repeat(EMBED_MAX_CHARS);
      await wrapped(inner).embed([long, exact, 'short']);
      expect(inner.batches).toHaveLength(1);
      expect(inner.batches[0]?.map((t) => t.length)).toEqual([EMBED_MAX_CHARS, EMBED_MAX_CHARS, 5]);
      expect(inner.batches[0]?.[0]).toBe(long.slice(0, EMBED_MAX_CHARS));
    });

    it('throws EMBEDDER_UNAVAILABLE after retrying an inner embedder that always fails', async () => {
      const inner = new CountingEmbedder('m', alwaysFails);
      const error = await rejection(wrapped(inner, { retries: 2, breakerThreshold: 100 }).embed(['x']));
      expect(error.code).toBe('EMBEDDER_UNAVAILABLE');
      expect(inner.calls).toBe(3);
      expect((error.cause as Error).message).toBe('provider down');
    });

    it('throws fast without calling the inner embedder once the breaker is open', async () => {
      const inner = new CountingEmbedder('m', alwaysFails);
      const embedder = wrapped(inner, { retries: 0, breakerThreshold: 3 });
      expect(embedder.breakerState).toBe('closed');
      for (let i = 0; i < 3; i++) {
        expect((await rejection(embedder.embed([`x${i}`]))).code).toBe('EMBEDDER_UNAVAILABLE');
      }
      expect(inner.calls).toBe(3);
      expect(embedder.breakerState).toBe('open');
      const error = await rejection(embedder.embed(['y']));
      expect(error.code).toBe('EMBEDDER_UNAVAILABLE');
      expect(inner.calls).toBe(3);
    });

    it('says it accepts calls again once the half-open delay has passed, though the circuit reads open until called', async () => {
      let failing = true;
      const reference = new BuiltinEmbedder('m', DIM);
      const inner = new CountingEmbedder('m', (batch) =>
        failing ? Promise.reject(new Error('provider down')) : reference.embed(batch),
      );
      const embedder = wrapped(inner, { retries: 0, breakerThreshold: 2, halfOpenAfterMs: 50 });
      expect(embedder.acceptsCalls).toBe(true);
      for (let i = 0; i < 2; i++) await rejection(embedder.embed([`x${i}`]));
      expect(embedder.breakerState).toBe('open');
      expect(embedder.acceptsCalls).toBe(false);
      await new Promise((r) => setTimeout(r, 80));
      // Nobody called: the circuit still reads open, but the next call would be the probe.
      expect(embedder.breakerState).toBe('open');
      expect(embedder.acceptsCalls).toBe(true);
      failing = false;
      expect(await embedder.embed(['probe'])).toHaveLength(1);
      expect(embedder.breakerState).toBe('closed');
    });

    it('throws EMBEDDER_UNAVAILABLE when the inner embedder hangs past the timeout', async () => {
      const inner = new CountingEmbedder('m', () => new Promise<Float32Array[]>(() => undefined));
      const error = await rejection(wrapped(inner, { timeoutMs: 50, retries: 0 }).embed(['x']));
      expect(error.code).toBe('EMBEDDER_UNAVAILABLE');
      expect(error.cause).toBeInstanceOf(TaskCancelledError);
      expect(inner.calls).toBe(1);
    });

    it('throws EMBEDDING_DIMENSION_MISMATCH without retrying when the inner vectors have another dimension', async () => {
      const inner = new CountingEmbedder('m', (batch) => Promise.resolve(batch.map(() => new Float32Array(DIM / 2))));
      const embedder = wrapped(inner, { retries: 3 });
      const error = await rejection(embedder.embed(['x', 'y']));
      expect(error.code).toBe('EMBEDDING_DIMENSION_MISMATCH');
      expect(error.details).toEqual({ model: 'm', expected: DIM, got: DIM / 2 });
      expect(inner.calls).toBe(1);
    });

    it('throws an AppError from the inner embedder as is, without retrying', async () => {
      const inner = new CountingEmbedder('m', () => Promise.reject(errors.dimensionMismatch('m', DIM, 3)));
      const error = await rejection(wrapped(inner, { retries: 3, breakerThreshold: 100 }).embed(['x']));
      expect(error.code).toBe('EMBEDDING_DIMENSION_MISMATCH');
      expect(inner.calls).toBe(1);
    });

    it('throws EMBEDDER_UNAVAILABLE when the inner embedder returns fewer vectors than inputs', async () => {
      const inner = new CountingEmbedder('m', (batch) =>
        Promise.resolve(batch.slice(1).map(() => Float32Array.from({ length: DIM }, () => 0.25))),
      );
      const error = await rejection(wrapped(inner).embed(['x', 'y']));
      expect(error.code).toBe('EMBEDDER_UNAVAILABLE');
    });

    it('returns vectors when every cache operation fails, embedding each time', async () => {
      const inner = new CountingEmbedder();
      const embedder = wrapped(inner, {}, new FailingCache());
      const inputs = texts(40);
      const expected = await new BuiltinEmbedder(inner.model, DIM).embed(inputs);
      expect(await embedder.embed(inputs)).toEqual(expected);
      expect(await embedder.embed(inputs)).toEqual(expected);
      expect(inner.batches.map((b) => b.length)).toEqual([32, 8, 32, 8]);
    });
  });

  describe('constructor', () => {
    it('returns an embedder reporting the inner provider, model and dimension', () => {
      const embedder = wrapped(new CountingEmbedder('named-model'));
      expect(embedder.provider).toBe('openai');
      expect(embedder.model).toBe('named-model');
      expect(embedder.dimension).toBe(DIM);
    });
  });
});
