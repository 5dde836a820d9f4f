import { describe, expect, it } from 'vitest';
import { BuiltinEmbedder } from './builtin.embedder.ts';
import { dot, norm } from '../../test/helpers/vectors.ts';

describe(BuiltinEmbedder.name, () => {
  describe('embed', () => {
    it('returns one vector of the configured dimension per input', async () => {
      for (const dimension of [8, 64, 384]) {
        const embedder = new BuiltinEmbedder('engram-hash-v1', dimension);
        const vectors = await embedder.embed(['alpha beta', 'gamma', 'delta epsilon zeta']);
        expect(vectors).toHaveLength(3);
        for (const v of vectors) {
          expect(v).toBeInstanceOf(Float32Array);
          expect(v).toHaveLength(dimension);
        }
      }
    });

    it('returns unit-length vectors', async () => {
      const embedder = new BuiltinEmbedder('engram-hash-v1', 384);
      const vectors = await embedder.embed([
        'The quick brown fox jumps over the lazy dog',
        'a',
        'Ünïcödé and 東京 and Привет',
        'x'.repeat(5_000),
      ]);
      for (const v of vectors) expect(norm(v)).toBeCloseTo(1, 5);
    });

    it('returns identical vectors from separate instances', async () => {
      const texts = ['deterministic hashing', 'same on every machine', ''];
      const a = await new BuiltinEmbedder('engram-hash-v1', 128).embed(texts);
      const b = await new BuiltinEmbedder('engram-hash-v1', 128).embed(texts);
      expect(b).toEqual(a);
    });

    it('returns an empty array for no inputs', async () => {
      expect(await new BuiltinEmbedder('engram-hash-v1', 32).embed([])).toEqual([]);
    });

    it('returns a higher cosine for texts sharing words than for unrelated texts', async () => {
      const embedder = new BuiltinEmbedder('engram-hash-v1', 384);
      const [query, related, unrelated] = await embedder.embed([
        'postgres connection pool timeout',
        'the postgres pool hit a connection timeout',
        'bake bread with sourdough starter',
      ]);
      if (query === undefined || related === undefined || unrelated === undefined) throw new Error('missing vector');
      expect(dot(query, related)).toBeGreaterThan(dot(query, unrelated));
      expect(dot(query, related)).toBeGreaterThan(0.3);
    });

    it('returns a vector ignoring case and punctuation', async () => {
      const embedder = new BuiltinEmbedder('engram-hash-v1', 128);
      const [a, b] = await embedder.embed(['Hello, World!', 'hello world']);
      expect(a).toEqual(b);
    });

    it('returns a unit vector for empty and symbol-only text', async () => {
      const embedder = new BuiltinEmbedder('engram-hash-v1', 64);
      const vectors = await embedder.embed(['', '   ', '!!! ??? --- ...']);
      for (const v of vectors) {
        expect(v).toHaveLength(64);
        expect(norm(v)).toBeCloseTo(1, 6);
        expect(v.every((x) => Number.isFinite(x))).toBe(true);
      }
    });
  });

  describe('constructor', () => {
    it('returns an embedder reporting the builtin provider, the model name and the dimension', () => {
      const embedder = new BuiltinEmbedder('my-hash', 16);
      expect(embedder.provider).toBe('builtin');
      expect(embedder.model).toBe('my-hash');
      expect(embedder.dimension).toBe(16);
    });
  });
});
