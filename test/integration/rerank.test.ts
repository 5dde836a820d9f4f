import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';
import { startFakeReranker, type FakeReranker } from '../helpers/fake-reranker.ts';

interface Body {
  results: Array<{ memory: { content: string }; score: number; signals: Record<string, { rank: number } | undefined> }>;
  degraded: string[];
  degradedReasons: Record<string, { code: string; message: string } | undefined>;
}

describe.each(['cohere', 'tei'] as const)(`rerank over %s (${backend})`, (api) => {
  let fake: FakeReranker;
  let t: TestEngram;
  let org: TestOrg;
  const search = async (payload: object) =>
    (await t.app.inject({ method: 'POST', url: '/v1/memories/search', headers: org.auth, payload })).json<Body>();

  beforeAll(async () => {
    fake = await startFakeReranker();
    t = await createTestEngram({
      RERANKER: 'http',
      RERANK_API: api,
      RERANK_BASE_URL: api === 'cohere' ? `${fake.baseUrl}/v1` : fake.baseUrl,
      RERANK_TIMEOUT_MS: '300',
      RERANK_RETRIES: '0',
      RERANK_BREAKER_THRESHOLD: '2',
      RERANK_BREAKER_HALF_OPEN_MS: '60000',
    });
    org = await t.makeOrg();
    // BM25 prefers the short memory that repeats "invoice"; the reranker, the one with every query word.
    await t.engram.memories.remember(org.ctx, { content: 'invoice invoice' });
    await t.engram.memories.remember(org.ctx, {
      content: 'The overdue invoice reminder goes out on Monday mornings to every customer',
    });
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it('re-scores the fused hits: the reranker decides the order and says so in signals', async () => {
    const lexical = await search({ query: 'overdue invoice reminder monday', mode: 'lexical' });
    expect(lexical.results.map((h) => h.memory.content)).toHaveLength(2);
    const body = await search({ query: 'overdue invoice reminder monday' });
    expect(body.degraded).toEqual([]);
    expect(body.results[0]?.memory.content).toContain('overdue invoice reminder');
    expect(body.results[0]?.signals.rerank?.rank).toBe(1);
    expect(body.results[1]?.signals.rerank?.rank).toBe(2);
    // The final scores are the reranker's: the share of query words each memory holds.
    expect(body.results.map((h) => h.score)).toEqual([1, 0.25]);
  });

  it('does not rerank single-signal modes', async () => {
    const before = fake.calls;
    const body = await search({ query: 'invoice', mode: 'lexical' });
    expect(body.results.every((h) => h.signals.rerank === undefined)).toBe(true);
    expect(fake.calls).toBe(before);
  });

  it('keeps the fused order and reports degraded when the answer is malformed, slow or an error, then opens the circuit', async () => {
    for (const behaviour of ['malformed', 'slow'] as const) {
      fake.behave(behaviour);
      const body = await search({ query: 'invoice reminder' });
      expect(body.results.length).toBe(2);
      expect(body.results.every((h) => h.signals.rerank === undefined)).toBe(true);
      expect(body.degraded).toEqual(['rerank']);
      expect(body.degradedReasons.rerank?.code).toBe('RERANKER_UNAVAILABLE');
    }
    // Two failures in a row opened the circuit: the next search does not call it.
    fake.behave('down');
    const calls = fake.calls;
    const body = await search({ query: 'invoice reminder' });
    expect(body.degraded).toEqual(['rerank']);
    expect(fake.calls).toBe(calls);
    const deps = await t.app.inject({ method: 'GET', url: '/health/deps' });
    expect((deps.json() as { deps: Record<string, string> }).deps.reranker).toBe('down');
    fake.behave('ok');
  });
});
