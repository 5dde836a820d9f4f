import { memoryAt, queryAt, rng, type BenchMemory } from './corpus.ts';

/**
 * The request mix of bench:load, shared by the HTTP load generator
 * (load-client.ts) and the in-process floor (load-in-process.ts) so that both
 * make the same calls in the same order: the same write/search draw, the same
 * corpus memories and queries, the same search mode and limit. Only the
 * transport differs.
 */

export interface MixSpec {
  /** Share of calls that are writes, 0..1. */
  readonly writeRatio: number;
  /** Corpus seed; writes use memories from `writeBase` on, searches queries from `queryBase` on. */
  readonly seed: number;
  readonly writeBase: number;
  readonly queryBase: number;
  readonly mode: 'lexical' | 'vector' | 'hybrid';
  readonly limit: number;
}

export const KIND_SEARCH = 0;
export const KIND_WRITE = 1;

/** One call of the mix: the body of `POST /v1/memories` or of `POST /v1/memories/search`. */
export type MixCall =
  | { readonly kind: typeof KIND_WRITE; readonly memory: BenchMemory }
  | {
      readonly kind: typeof KIND_SEARCH;
      readonly search: { readonly query: string; readonly mode: MixSpec['mode']; readonly limit: number };
    };

/**
 * The mix as a sequence: each call to the returned function draws the next
 * call. Whoever asks first gets the next one, so with many connections or
 * workers the sequence is the same and only its interleaving varies.
 */
export function loadMix(spec: MixSpec): () => MixCall {
  const choose = rng(spec.seed * 31 + spec.writeBase);
  let writes = 0;
  let searches = 0;
  return () => {
    if (choose() < spec.writeRatio) {
      return { kind: KIND_WRITE, memory: memoryAt(spec.seed, spec.writeBase + writes++) };
    }
    const query = queryAt(spec.seed, spec.queryBase + searches++);
    return { kind: KIND_SEARCH, search: { query, mode: spec.mode, limit: spec.limit } };
  };
}

/** One entry per answer, as parallel columns (cheap to send over IPC). */
export interface LoadSamples {
  /** Epoch milliseconds (performance.timeOrigin + now) when the answer was complete. */
  readonly at: number[];
  readonly kind: number[];
  /** HTTP status; in-process: 201/200 for a write (created/deduplicated), 200 for a search, 0 when the call threw. */
  readonly status: number[];
  readonly ms: number[];
  /** 1 when a search answer listed a degraded signal. */
  readonly degraded: number[];
}

/** What one closed-loop run recorded, whatever the transport. */
export interface LoadRun {
  /** Epoch milliseconds of the start and the end of the measured window. */
  readonly startedAt: number;
  readonly finishedAt: number;
  readonly samples: LoadSamples;
  /** Calls that got no answer within the timeout: epoch ms and `timeout` or the socket error. */
  readonly failures: Array<{ readonly at: number; readonly error: string }>;
}
