import { describe, expect, it } from 'vitest';
import type { Memory } from '../memory/memory.types.ts';
import { RRF_K, fuse, queryTerms } from './search.service.ts';
import type { RankedMemory } from './search.types.ts';

const memory = (id: string): Memory => ({
  id,
  scope: {},
  content: `content of ${id}`,
  contentHash: `hash-${id}`,
  metadata: {},
  tags: [],
  source: null,
  version: 1,
  validFrom: null,
  validTo: null,
  createdAt: new Date('2025-01-01T00:00:00Z'),
  updatedAt: new Date('2025-01-01T00:00:00Z'),
});

/** A ranked list from ids, best first, with descending raw scores. */
const ranked = (ids: string[], top = 10): RankedMemory[] =>
  ids.map((id, i) => ({ memory: memory(id), score: top - i }));

const rrf = (...ranks: number[]) => ranks.reduce((sum, rank) => sum + 1 / (60 + rank), 0);

describe(queryTerms.name, () => {
  it('returns lower-cased terms', () => {
    expect(queryTerms('Hello WORLD')).toEqual(['hello', 'world']);
  });

  it('returns each term once, in first-seen order', () => {
    expect(queryTerms('cat Dog cat DOG bird cat')).toEqual(['cat', 'dog', 'bird']);
  });

  it('returns terms split on punctuation and whitespace', () => {
    expect(queryTerms("don't stop.now;ok\tfoo-bar/baz_qux (x)")).toEqual([
      'don',
      't',
      'stop',
      'now',
      'ok',
      'foo',
      'bar',
      'baz',
      'qux',
      'x',
    ]);
  });

  it('returns digits as terms', () => {
    expect(queryTerms('v2 release 2024-06')).toEqual(['v2', 'release', '2024', '06']);
  });

  it('returns unicode letters as terms, lower-cased', () => {
    expect(queryTerms('Ünïcödé Straße, Привет! ΚΑΛΗΜΈΡΑ 東京')).toEqual([
      'ünïcödé',
      'straße',
      'привет',
      'καλημέρα',
      '東京',
    ]);
  });

  it('returns NFKC-normalised terms, so full-width and composed forms match plain ones', () => {
    expect(queryTerms('ＡＢＣ café cafe\u0301')).toEqual(['abc', 'café']);
  });

  it('returns no terms for empty or punctuation-only queries', () => {
    expect(queryTerms('')).toEqual([]);
    expect(queryTerms('  !!! ... --- ??? ')).toEqual([]);
  });

  it('returns at most 64 terms', () => {
    const query = Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ');
    const terms = queryTerms(query);
    expect(terms).toHaveLength(64);
    expect(terms[0]).toBe('w0');
    expect(terms[63]).toBe('w63');
  });
});

describe(fuse.name, () => {
  it('uses the standard RRF constant of 60', () => {
    expect(RRF_K).toBe(60);
  });

  it('returns a higher score for a document found by both signals than for one found by one at the same rank', () => {
    const hits = fuse({ lexical: ranked(['lexOnly', 'both']), vector: ranked(['both', 'vecOnly']) }, 10);
    expect(hits.map((h) => h.memory.id)[0]).toBe('both');
    const score = Object.fromEntries(hits.map((h) => [h.memory.id, h.score]));
    expect(score.both).toBeGreaterThan(score.lexOnly ?? Infinity);
    expect(score.both).toBeGreaterThan(score.vecOnly ?? Infinity);
  });

  it('returns scores as the sum of 1/(60 + rank) over the signals', () => {
    const hits = fuse({ lexical: ranked(['a', 'b', 'c']), vector: ranked(['c', 'd']) }, 10);
    const score = Object.fromEntries(hits.map((h) => [h.memory.id, h.score]));
    expect(score.a).toBeCloseTo(rrf(1), 12);
    expect(score.b).toBeCloseTo(rrf(2), 12);
    expect(score.c).toBeCloseTo(rrf(3, 1), 12);
    expect(score.d).toBeCloseTo(rrf(2), 12);
    expect(hits.map((h) => h.memory.id)).toEqual(['c', 'a', expect.any(String), expect.any(String)]);
  });

  it("returns each hit with both signals' ranks and raw scores, and only the signals that found it", () => {
    const hits = fuse(
      {
        lexical: [
          { memory: memory('a'), score: 7.5 },
          { memory: memory('b'), score: 3.25 },
        ],
        vector: [{ memory: memory('b'), score: 0.91 }],
      },
      10,
    );
    const byId = Object.fromEntries(hits.map((h) => [h.memory.id, h]));
    expect(byId.b?.signals).toEqual({ lexical: { rank: 2, score: 3.25 }, vector: { rank: 1, score: 0.91 } });
    expect(byId.a?.signals).toEqual({ lexical: { rank: 1, score: 7.5 } });
    expect(byId.a?.memory).toEqual(memory('a'));
  });

  it('returns ranks fused by position, not by raw score', () => {
    // Raw scores of different signals are not comparable; only ranks count.
    const hits = fuse(
      {
        lexical: [{ memory: memory('a'), score: 0.001 }],
        vector: [
          { memory: memory('b'), score: 0.002 },
          { memory: memory('c'), score: 1_000_000 },
        ],
      },
      10,
    );
    expect(hits.map((h) => h.memory.id).at(-1)).toBe('c');
  });

  it('returns at most `limit` hits, the best ones', () => {
    const hits = fuse({ lexical: ranked(['a', 'b', 'c', 'd', 'e']), vector: ranked(['e', 'd']) }, 3);
    expect(hits).toHaveLength(3);
    expect(hits.map((h) => h.memory.id)).toEqual(['e', 'd', 'a']);
  });

  it('returns hits sorted by descending score', () => {
    const hits = fuse({ lexical: ranked(['a', 'b', 'c', 'd']), vector: ranked(['d', 'x', 'c']) }, 10);
    const scores = hits.map((h) => h.score);
    expect(scores).toEqual([...scores].sort((x, y) => y - x));
  });

  it('returns the single signal ranking when only one list is given', () => {
    const hits = fuse({ vector: ranked(['a', 'b', 'c']) }, 10);
    expect(hits.map((h) => h.memory.id)).toEqual(['a', 'b', 'c']);
    expect(hits.every((h) => h.signals.lexical === undefined)).toBe(true);
  });

  it('returns no hits for empty lists', () => {
    expect(fuse({}, 10)).toEqual([]);
    expect(fuse({ lexical: [], vector: [] }, 10)).toEqual([]);
  });
});
