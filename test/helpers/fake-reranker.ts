import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for a third-party rerank service over real HTTP, speaking both
 * wire protocols Engram supports: Cohere/Jina (`POST /v1/rerank` with
 * `{model, query, documents, top_n}` → `{results: [{index, relevance_score}]}`)
 * and TEI (`POST /rerank` with `{query, texts}` → `[{index, score}]`). Its
 * relevance is "how many query words the document contains", sorted best
 * first as real servers answer. `behave` switches it to failing (503),
 * malformed (a 200 that is not the protocol) or slow answers.
 */
export type FakeRerankBehaviour = 'ok' | 'down' | 'malformed' | 'slow';

export interface FakeReranker {
  readonly baseUrl: string;
  readonly calls: number;
  behave(b: FakeRerankBehaviour): void;
  close(): Promise<void>;
}

const words = (s: string) => new Set(s.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []);

export async function startFakeReranker(slowMs = 3_000): Promise<FakeReranker> {
  let behaviour: FakeRerankBehaviour = 'ok';
  let calls = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      calls += 1;
      const send = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      if (behaviour === 'down') return send(503, { error: 'overloaded' });
      if (behaviour === 'malformed') return send(200, { results: [{ index: 'zero', relevance_score: 'high' }] });
      const tei = req.url === '/rerank';
      if (req.method !== 'POST' || (!tei && req.url !== '/v1/rerank')) return send(404, { error: 'not found' });
      const parsed = JSON.parse(body) as { query: string; documents?: string[]; texts?: string[] };
      const q = words(parsed.query);
      const docs = (tei ? parsed.texts : parsed.documents) ?? [];
      const scored = docs
        .map((d, index) => ({ index, score: [...words(d)].filter((w) => q.has(w)).length / (q.size || 1) }))
        .sort((a, b) => b.score - a.score);
      const answer = tei
        ? scored
        : { id: 'rr-1', results: scored.map((s) => ({ index: s.index, relevance_score: s.score })) };
      if (behaviour === 'slow') setTimeout(() => send(200, answer), slowMs);
      else send(200, answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    get calls() {
      return calls;
    },
    behave: (b) => {
      behaviour = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
