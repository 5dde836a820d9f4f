import { AppError, errors } from '../errors.ts';
import type { Embedder } from '../ports/embedder.ts';

export interface OpenAiEmbedderOptions {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  readonly model: string;
  readonly dimension: number;
  /** Per-request timeout; the resilience wrapper adds its own as well. */
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
}

interface EmbeddingsResponse {
  data?: Array<{ index?: number; embedding?: unknown }>;
}

/**
 * Any OpenAI-compatible `POST /v1/embeddings` endpoint: OpenAI, Ollama,
 * llama.cpp server, TEI, vLLM. The configured dimension is checked against
 * every answer, so a model change is an explicit error, not silent garbage.
 */
export class OpenAiEmbedder implements Embedder {
  readonly provider = 'openai' as const;
  readonly model: string;
  readonly dimension: number;
  private readonly url: string;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: OpenAiEmbedderOptions) {
    this.model = opts.model;
    this.dimension = opts.dimension;
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/embeddings`;
    this.doFetch = opts.fetch ?? fetch;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const res = await this.doFetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.opts.apiKey === undefined ? {} : { authorization: `Bearer ${this.opts.apiKey}` }),
      },
      body: JSON.stringify({ model: this.model, input: texts, encoding_format: 'float' }),
      signal: AbortSignal.timeout(this.opts.timeoutMs),
    });
    if (!res.ok) {
      const body = (await res.text().catch(() => '')).slice(0, 300);
      throw new Error(`embeddings endpoint answered ${res.status}: ${body}`);
    }
    const json = (await res.json()) as EmbeddingsResponse;
    const data = json.data;
    if (!Array.isArray(data) || data.length !== texts.length) {
      throw new Error(
        `embeddings endpoint returned ${Array.isArray(data) ? data.length : 'no'} vectors for ${texts.length} inputs`,
      );
    }
    const out: Array<Float32Array | undefined> = Array.from({ length: texts.length }, () => undefined);
    data.forEach((d, i) => {
      const idx = typeof d.index === 'number' ? d.index : i;
      if (!Number.isInteger(idx) || idx < 0 || idx >= texts.length || out[idx] !== undefined) {
        throw new Error(`embeddings endpoint returned an invalid or repeated index ${idx}`);
      }
      if (!Array.isArray(d.embedding) || !d.embedding.every((x) => typeof x === 'number')) {
        throw new Error('embeddings endpoint returned a non-numeric vector');
      }
      const v = Float32Array.from(d.embedding);
      if (v.length !== this.dimension) throw errors.dimensionMismatch(this.model, this.dimension, v.length);
      out[idx] = normalize(v);
    });
    return out.map((v) => {
      if (v === undefined) throw new AppError('EMBEDDER_UNAVAILABLE', 'embeddings endpoint skipped an input');
      return v;
    });
  }
}

export function normalize(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  if (n === 0) return v;
  const inv = 1 / Math.sqrt(n);
  for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) * inv;
  return v;
}
