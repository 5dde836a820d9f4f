/**
 * The embedding port. Domain services turn text into vectors only through this
 * interface, so the provider (builtin, onnx, openai) is a configuration choice.
 *
 * Contract:
 * - `model` names the model uniquely (vectors are stored per model);
 * - `dimension` is fixed for the lifetime of the embedder;
 * - `embed(texts)` returns one L2-normalised vector per input, in input order;
 *   implementations may assume at most {@link EMBED_MAX_BATCH} inputs of at most
 *   {@link EMBED_MAX_CHARS} characters each (the caching/batching wrapper enforces it);
 * - failures throw (the resilience wrapper adds timeout, retry and a breaker).
 */
export interface Embedder {
  readonly provider: 'builtin' | 'onnx' | 'openai';
  readonly model: string;
  readonly dimension: number;
  embed(texts: readonly string[]): Promise<Float32Array[]>;
  /** Releases native resources (sessions, sockets). Idempotent. */
  close?(): Promise<void>;
}

export const EMBED_MAX_BATCH = 32;
export const EMBED_MAX_CHARS = 10_000;
