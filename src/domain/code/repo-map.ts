import type { RankedSymbol, ReferenceGraph } from './code-graph.types.ts';
import type { CodeSymbol } from './code.types.ts';

const DAMPING = 0.85;
const MAX_ITERATIONS = 100;
const TOLERANCE = 1e-9;

/**
 * PageRank by power iteration over a weighted graph. A node's rank flows
 * along its out-edges in proportion to their weights (here: resolution
 * confidence); dangling nodes spread theirs evenly. Returns ranks summing
 * to 1, by node id.
 */
export function pageRank(
  nodes: readonly string[],
  edges: ReadonlyArray<{ src: string; dst: string; weight: number }>,
): Map<string, number> {
  const n = nodes.length;
  const ranks = new Map<string, number>();
  if (n === 0) return ranks;
  const index = new Map(nodes.map((id, i) => [id, i]));
  const out: Array<Array<{ to: number; w: number }>> = nodes.map(() => []);
  const outWeight = new Float64Array(n);
  for (const e of edges) {
    const s = index.get(e.src);
    const d = index.get(e.dst);
    if (s === undefined || d === undefined || s === d || e.weight <= 0) continue;
    (out[s] as Array<{ to: number; w: number }>).push({ to: d, w: e.weight });
    outWeight[s] = (outWeight[s] ?? 0) + e.weight;
  }
  let rank = new Float64Array(n).fill(1 / n);
  for (let it = 0; it < MAX_ITERATIONS; it++) {
    const next = new Float64Array(n);
    let dangling = 0;
    for (let i = 0; i < n; i++) {
      const r = rank[i] ?? 0;
      const total = outWeight[i] ?? 0;
      if (total === 0) {
        dangling += r;
        continue;
      }
      for (const { to, w } of out[i] ?? []) next[to] = (next[to] ?? 0) + (DAMPING * r * w) / total;
    }
    const base = (1 - DAMPING) / n + (DAMPING * dangling) / n;
    let delta = 0;
    for (let i = 0; i < n; i++) {
      const v = (next[i] ?? 0) + base;
      delta += Math.abs(v - (rank[i] ?? 0));
      next[i] = v;
    }
    rank = next;
    if (delta < TOLERANCE) break;
  }
  nodes.forEach((id, i) => ranks.set(id, rank[i] ?? 0));
  return ranks;
}

/** Symbols ranked by PageRank over the reference graph, most central first (ties: path, line). */
export function rankSymbols(graph: ReferenceGraph): RankedSymbol[] {
  const ids = new Set(graph.symbols.map((s) => s.id));
  for (const e of graph.edges) ids.add(e.src);
  const ranks = pageRank([...ids], graph.edges);
  return graph.symbols
    .map((symbol) => ({ symbol, rank: ranks.get(symbol.id) ?? 0 }))
    .sort(
      (a, b) =>
        b.rank - a.rank ||
        a.symbol.path.localeCompare(b.symbol.path) ||
        a.symbol.span.startLine - b.symbol.span.startLine,
    );
}

/** The usual estimate for code: about four characters per token. */
export const estimateTokens = (text: string): number => Math.ceil(text.length / 4);

const signatureLine = (s: CodeSymbol, depth: number): string =>
  `${'  '.repeat(depth + 1)}${(s.signature.trim() || `${s.kind} ${s.name}`).replace(/\s+/g, ' ')}`;

/**
 * Renders ranked symbols like aider's repo map: one header per file (files in
 * the order of their best symbol), under it the chosen symbols' signatures in
 * source order, members indented under their parent. Takes symbols in rank
 * order while the text stays within `tokens`; returns the symbols kept.
 */
export function renderRepoMap(
  ranked: readonly RankedSymbol[],
  tokens: number,
): { text: string; symbols: RankedSymbol[] } {
  const budget = tokens * 4;
  const kept: RankedSymbol[] = [];
  const files = new Map<string, RankedSymbol[]>();
  let size = 0;
  for (const r of ranked) {
    const header = files.has(r.symbol.path) ? 0 : r.symbol.path.length + 2;
    const line = signatureLine(r.symbol, r.symbol.qualifiedName.split('.').length - 1).length + 1;
    if (size + header + line > budget) continue;
    size += header + line;
    kept.push(r);
    files.set(r.symbol.path, [...(files.get(r.symbol.path) ?? []), r]);
  }
  const text = [...files.entries()]
    .map(([file, syms]) => {
      const lines = [...syms]
        .sort((a, b) => a.symbol.span.startLine - b.symbol.span.startLine)
        .map((r) => signatureLine(r.symbol, r.symbol.qualifiedName.split('.').length - 1));
      return `${file}:\n${lines.join('\n')}`;
    })
    .join('\n');
  return { text, symbols: kept };
}
