import { errors } from '../errors.ts';
import { RERANK_MAX_CHARS, type Reranker } from '../ports/reranker.ts';
import { DependencyPolicy, type BreakerState } from '../ops/resilience.ts';
import type { EmbedderActivity } from '../embed/resilient-embedder.ts';

export interface ResilientRerankerOptions {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly breakerThreshold: number;
  readonly halfOpenAfterMs: number;
}

/**
 * A reranker with what the embedder has: documents cut to
 * {@link RERANK_MAX_CHARS}, a timeout, retries with backoff and a circuit
 * breaker, and the outcome of the last call for /health/deps (which must not
 * call a paid API). Failures surface as RERANKER_UNAVAILABLE; search then
 * keeps the fused order and says `degraded: ['rerank']`.
 */
export class ResilientReranker implements Reranker {
  readonly provider: Reranker['provider'];
  readonly model: string;
  private readonly policy: DependencyPolicy;
  private last: EmbedderActivity = {
    lastSuccessAt: undefined,
    lastFailureAt: undefined,
    lastError: undefined,
    lastLatencyMs: undefined,
  };

  constructor(
    private readonly inner: Reranker,
    opts: ResilientRerankerOptions,
  ) {
    this.provider = inner.provider;
    this.model = inner.model;
    this.policy = new DependencyPolicy({
      name: 'reranker',
      timeoutMs: opts.timeoutMs,
      retries: opts.retries,
      breakerThreshold: opts.breakerThreshold,
      halfOpenAfterMs: opts.halfOpenAfterMs,
      backoff: { initialDelayMs: 100, maxDelayMs: 2_000 },
    });
  }

  get breakerState(): BreakerState {
    return this.policy.state;
  }

  get activity(): EmbedderActivity {
    return this.last;
  }

  async rerank(query: string, documents: readonly string[]): Promise<number[]> {
    const inputs = documents.map((d) => (d.length > RERANK_MAX_CHARS ? d.slice(0, RERANK_MAX_CHARS) : d));
    const t0 = performance.now();
    try {
      // Scoring is a read: repeating it cannot change the outcome.
      const scores = await this.policy.execute(() => this.inner.rerank(query, inputs), { idempotent: true });
      this.last = { ...this.last, lastSuccessAt: new Date(), lastLatencyMs: performance.now() - t0 };
      return scores;
    } catch (e) {
      const err = e as Error;
      this.last = {
        ...this.last,
        lastFailureAt: new Date(),
        lastError: `${err.message}`.slice(0, 300),
        lastLatencyMs: performance.now() - t0,
      };
      throw errors.rerankerUnavailable(e);
    }
  }
}
