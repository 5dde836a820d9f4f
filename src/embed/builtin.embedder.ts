import type { Embedder } from '../ports/embedder.ts';

/**
 * A weight-free, deterministic embedder: signed feature hashing of words,
 * word bigrams and character trigrams into `dimension` buckets, L2-normalised.
 * It needs no download and gives the same vector on every machine, so a fresh
 * install works offline. It captures lexical overlap, misspellings and word
 * fragments, not meaning: use `onnx` or `openai` for semantic search.
 */
export class BuiltinEmbedder implements Embedder {
  readonly provider = 'builtin' as const;
  constructor(
    readonly model: string,
    readonly dimension: number,
  ) {}

  embed(texts: readonly string[]): Promise<Float32Array[]> {
    return Promise.resolve(texts.map((t) => this.embedOne(t)));
  }

  private embedOne(text: string): Float32Array {
    const v = new Float32Array(this.dimension);
    const words =
      text
        .toLowerCase()
        .normalize('NFKC')
        .match(/[\p{L}\p{N}]+/gu) ?? [];
    let prev: string | undefined;
    for (const w of words) {
      this.add(v, `w:${w}`, 1);
      if (prev !== undefined) this.add(v, `b:${prev} ${w}`, 0.5);
      prev = w;
      const padded = `^${w}$`;
      for (let i = 0; i + 3 <= padded.length; i++) this.add(v, `c:${padded.slice(i, i + 3)}`, 0.25);
    }
    let norm = 0;
    for (const x of v) norm += x * x;
    if (norm === 0) {
      // Empty or symbol-only text: a fixed unit vector keeps cosine defined.
      v[0] = 1;
      return v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) * inv;
    return v;
  }

  private add(v: Float32Array, feature: string, weight: number): void {
    const h = fnv1a(feature);
    const idx = h % this.dimension;
    const sign = (fnv1a(`s${feature}`) & 1) === 0 ? 1 : -1;
    v[idx] = (v[idx] ?? 0) + sign * weight;
  }
}

/** 32-bit FNV-1a over UTF-16 code units: fast and stable across platforms. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
