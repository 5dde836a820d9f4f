import { describe, expect, it } from 'vitest';
import type { Memory } from '../memory/memory.types.ts';
import { RRF_K, contextBoosts, fuseRanked, fuseScores, queryTerms } from './search.service.ts';

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

const W = { lexical: 1, vector: 0.5, context: 0.2, graph: 0.3 };
const scored = (pairs: Array<[string, number]>) => pairs.map(([id, score]) => ({ memory: memory(id), score }));

describe(fuseRanked.name, () => {
  it('uses the standard RRF constant of 60 and sums w/(60 + rank) over the lists', () => {
    expect(RRF_K).toBe(60);
    const items = (ids: string[]) => ids.map((id) => ({ item: memory(id), score: 1 }));
    const hits = fuseRanked({ lexical: items(['a', 'c']), vector: items(['c']) }, (m) => m.id, 10);
    const score = Object.fromEntries(hits.map((h) => [h.item.id, h.score]));
    expect(score.a).toBeCloseTo(1 / 61, 12);
    expect(score.c).toBeCloseTo(1 / 62 + 1 / 61, 12);
  });
});

describe(fuseScores.name, () => {
  it('ranks a clear lexical winner first even when the weak vector signal prefers another', () => {
    // Rank fusion would tie these two; scores keep BM25's margin.
    const hits = fuseScores(
      {
        lexical: scored([
          ['strong', 10],
          ['weak', 1],
        ]),
        vector: scored([
          ['weak', 0.51],
          ['strong', 0.5],
        ]),
      },
      { ...W, vector: 0.05 },
      10,
    );
    expect(hits.map((h) => h.memory.id)).toEqual(['strong', 'weak']);
  });

  it('lets a strong vector signal lift a hit that lexical missed', () => {
    const hits = fuseScores(
      {
        lexical: scored([
          ['a', 5],
          ['b', 4.9],
        ]),
        vector: scored([
          ['c', 0.9],
          ['a', 0.2],
          ['b', 0.1],
        ]),
      },
      { ...W, vector: 1 },
      10,
    );
    expect(hits[0]?.memory.id).toBe('a');
    expect(hits.map((h) => h.memory.id)).toContain('c');
    expect(hits.findIndex((h) => h.memory.id === 'c')).toBeLessThan(hits.findIndex((h) => h.memory.id === 'b'));
  });

  it('adds context to lexical in the same BM25 units', () => {
    // b's own BM25 plus its neighbour's share beats a, which has no neighbour.
    const hits = fuseScores(
      {
        lexical: scored([
          ['a', 5],
          ['b', 4.5],
        ]),
        context: scored([['b', 1]]),
      },
      W,
      10,
    );
    expect(hits.map((h) => h.memory.id)).toEqual(['b', 'a']);
    expect(hits[0]?.score).toBeCloseTo(1, 12);
    expect(hits[1]?.score).toBeCloseTo(5 / 5.5, 12);
  });

  it("returns each hit with every signal's rank and raw score, and only the signals that found it", () => {
    const hits = fuseScores(
      {
        lexical: scored([
          ['a', 7.5],
          ['b', 3.25],
        ]),
        vector: scored([['b', 0.91]]),
      },
      W,
      10,
    );
    const byId = Object.fromEntries(hits.map((h) => [h.memory.id, h]));
    expect(byId.b?.signals).toEqual({ lexical: { rank: 2, score: 3.25 }, vector: { rank: 1, score: 0.91 } });
    expect(byId.a?.signals).toEqual({ lexical: { rank: 1, score: 7.5 } });
    expect(byId.a?.memory).toEqual(memory('a'));
  });

  it('returns at most `limit` hits sorted by descending score, ties to the newer id', () => {
    const hits = fuseScores(
      {
        lexical: scored([
          ['a', 1],
          ['c', 1],
          ['b', 1],
          ['d', 0.5],
        ]),
      },
      W,
      3,
    );
    expect(hits.map((h) => h.memory.id)).toEqual(['c', 'b', 'a']);
  });

  it('returns no hits for empty lists', () => {
    expect(fuseScores({}, W, 10)).toEqual([]);
    expect(fuseScores({ lexical: [], vector: [] }, W, 10)).toEqual([]);
  });
});

describe(contextBoosts.name, () => {
  it("gives each neighbour the weight times its hit's score, keeping the best share", () => {
    const boosts = contextBoosts(
      scored([
        ['hit1', 10],
        ['hit2', 4],
      ]),
      [
        { of: 'hit1', memory: memory('n1') },
        { of: 'hit2', memory: memory('n1') },
        { of: 'hit2', memory: memory('n2') },
        { of: 'hit1', memory: memory('hit2') },
      ],
      0.2,
    );
    // Equal boosts go to the newer (greater) id first.
    expect(boosts.map((b) => b.memory.id)).toEqual(['n1', 'hit2', 'n2']);
    expect(boosts.map((b) => b.score)).toEqual([2, 2, expect.closeTo(0.8, 12)]);
  });

  it('gives nothing with weight 0 or for a neighbour of an unknown hit', () => {
    expect(contextBoosts(scored([['h', 3]]), [{ of: 'h', memory: memory('n') }], 0)).toEqual([]);
    expect(contextBoosts(scored([['h', 3]]), [{ of: 'other', memory: memory('n') }], 0.2)).toEqual([]);
  });
});
