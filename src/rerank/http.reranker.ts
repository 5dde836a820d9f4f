import type { Reranker } from '../ports/reranker.ts';

/**
 * The two rerank APIs the common servers speak:
 * - `cohere`: `POST {base}/rerank` `{model, query, documents, top_n}` →
 *   `{results: [{index, relevance_score}]}` (Cohere, Jina, vLLM, llama.cpp
 *   server, LocalAI);
 * - `tei`: `POST {base}/rerank` `{query, texts}` → `[{index, score}]`
 *   (Hugging Face text-embeddings-inference).
 */
export type RerankApi = 'cohere' | 'tei';

export interface HttpRerankerOptions {
  readonly baseUrl: string;
  readonly api: RerankApi;
  readonly model: string;
  readonly apiKey: string | undefined;
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
}

/** A reranker behind an HTTP API; answers are checked, never trusted. */
export class HttpReranker implements Reranker {
  readonly provider = 'http' as const;
  readonly model: string;
  private readonly url: string;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: HttpRerankerOptions) {
    this.model = opts.model;
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/rerank`;
    this.doFetch = opts.fetch ?? fetch;
  }

  async rerank(query: string, documents: readonly string[]): Promise<number[]> {
    if (documents.length === 0) return [];
    const body =
      this.opts.api === 'tei'
        ? { query, texts: documents, raw_scores: false }
        : { model: this.model, query, documents, top_n: documents.length };
    const res = await this.doFetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.opts.apiKey === undefined ? {} : { authorization: `Bearer ${this.opts.apiKey}` }),
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.opts.timeoutMs),
    });
    if (!res.ok) {
      const text = (await res.text().catch(() => '')).slice(0, 300);
      throw new Error(`rerank endpoint answered ${res.status}: ${text}`);
    }
    const json: unknown = await res.json();
    const items = this.opts.api === 'tei' ? json : (json as { results?: unknown } | null)?.results;
    if (!Array.isArray(items)) throw new Error('rerank endpoint returned no result list');
    const scores: Array<number | undefined> = documents.map(() => undefined);
    for (const raw of items as unknown[]) {
      const r = raw as { index?: unknown; score?: unknown; relevance_score?: unknown } | null;
      const index = r?.index;
      const score = this.opts.api === 'tei' ? r?.score : r?.relevance_score;
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= documents.length) {
        throw new Error(`rerank endpoint returned an invalid index ${String(index)}`);
      }
      if (typeof score !== 'number' || !Number.isFinite(score))
        throw new Error('rerank endpoint returned a non-numeric score');
      if (scores[index] !== undefined) throw new Error(`rerank endpoint returned index ${index} twice`);
      scores[index] = score;
    }
    return scores.map((s, i) => {
      if (s === undefined) throw new Error(`rerank endpoint skipped document ${i}`);
      return s;
    });
  }
}
