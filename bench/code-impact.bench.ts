/**
 * Code impact benchmark. Indexes a real repository with Engram (the server,
 * in this process, on a fresh embedded store) and
 *
 *  1. compares file-level impact sets — every file that transitively depends
 *     on a file — with dependency-cruiser's (`--reaches`, the same question)
 *     on a sample of files: Jaccard, precision and recall per sample and
 *     overall (micro-averaged);
 *  2. times `GET /v1/code/impact` at depth 5 over many symbols (p50/p95/p99).
 *
 *   npm run bench:code-impact -- [--repo .] [--dir src] [--samples 40] [--symbols 300] [--out bench/results]
 *
 * dependency-cruiser cruises `--dir` once (type-only imports included, as
 * Engram indexes them) and the reverse closure is taken on its module graph;
 * `--reaches` on the CLI answers from the same graph (checked on the first
 * samples). Engram's sets are cut to files under `--dir`. The issue's
 * target: impact at depth 5, p95 ≤ 50 ms.
 */
import { cruise, type ICruiseResult } from 'dependency-cruiser';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { api, startBackend, DEFAULT_DATABASE_URL, type Backend, type BackendName } from './lib/backend.ts';
import { DEFAULT_RESULTS_DIR, fmt, log, positiveInt, runBench, writeResult } from './lib/cli.ts';
import { round, roundSummary, summarize, table } from './lib/stats.ts';

const HELP = `Usage: npm run bench:code-impact -- [options]

  --repo <dir>      repository to index (default: this checkout)
  --dir <path>      sub-directory compared with dependency-cruiser (default src)
  --samples <n>     files whose impact sets are compared (default 40)
  --symbols <n>     symbols whose impact is timed at depth 5 (default 300)
  --backend <name>  pglite or postgres (default postgres: DATABASE_URL, default ${DEFAULT_DATABASE_URL})
  --min-confidence <x>  confidence floor of the file-level impact compared (default 0.5: every resolved edge)
  --no-precise      index without the TypeScript precise pass (heuristic edges only)
  --out <dir>       where to write the JSON (default bench/results)
  --help
`;

interface Options {
  readonly help: boolean;
  readonly repo: string;
  readonly dir: string;
  readonly samples: number;
  readonly symbols: number;
  readonly precise: boolean;
  readonly backend: BackendName;
  readonly minConfidence: number;
  readonly out: string;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', default: false },
      repo: { type: 'string' },
      dir: { type: 'string' },
      samples: { type: 'string' },
      symbols: { type: 'string' },
      'no-precise': { type: 'boolean', default: false },
      backend: { type: 'string' },
      'min-confidence': { type: 'string' },
      out: { type: 'string' },
    },
  });
  return {
    help: values.help,
    repo: realpathSync(path.resolve(values.repo ?? '.')),
    dir: (values.dir ?? 'src').replace(/\/+$/, ''),
    samples: positiveInt('samples', values.samples, 40),
    symbols: positiveInt('symbols', values.symbols, 300),
    precise: !values['no-precise'],
    backend: values.backend === 'pglite' ? 'pglite' : 'postgres',
    minConfidence: Number(values['min-confidence'] ?? '0.5'),
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}

let backend: Backend | undefined;

interface Traversal {
  total: number;
  truncated: boolean;
  byDepth: Array<{ depth: number; items: Array<{ node: { path: string | null } }> }>;
}

/** dependency-cruiser's module graph of `dir` (relative to `repo`), reversed: file → files that import it. */
async function cruiseReverse(repo: string, dir: string): Promise<Map<string, Set<string>>> {
  const cwd = process.cwd();
  process.chdir(repo);
  try {
    const r = await cruise([dir], { tsPreCompilationDeps: true, baseDir: repo, doNotFollow: { path: 'node_modules' } });
    const result = r.output as ICruiseResult;
    const reverse = new Map<string, Set<string>>();
    for (const m of result.modules) {
      if (!m.source.startsWith(`${dir}/`)) continue;
      for (const d of m.dependencies) {
        if (d.couldNotResolve || d.coreModule || !d.resolved.startsWith(`${dir}/`) || d.resolved === m.source) continue;
        const set = reverse.get(d.resolved) ?? new Set<string>();
        set.add(m.source);
        reverse.set(d.resolved, set);
      }
    }
    return reverse;
  } finally {
    process.chdir(cwd);
  }
}

/** What `depcruise --reaches <file>` lists besides the file itself: every module that transitively imports it. */
function reaches(reverse: Map<string, Set<string>>, file: string): Set<string> {
  const seen = new Set<string>([file]);
  const queue = [file];
  for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
    for (const g of reverse.get(f) ?? []) {
      if (!seen.has(g)) {
        seen.add(g);
        queue.push(g);
      }
    }
  }
  seen.delete(file);
  return seen;
}

/** The CLI's own answer, for a cross-check of {@link reaches}. */
async function reachesViaCruise(repo: string, dir: string, file: string): Promise<Set<string>> {
  const cwd = process.cwd();
  process.chdir(repo);
  try {
    const escaped = `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
    const r = await cruise([dir], {
      tsPreCompilationDeps: true,
      baseDir: repo,
      doNotFollow: { path: 'node_modules' },
      reaches: escaped,
    });
    const result = r.output as ICruiseResult;
    return new Set(
      result.modules.filter((m) => m.source !== file && m.source.startsWith(`${dir}/`)).map((m) => m.source),
    );
  } finally {
    process.chdir(cwd);
  }
}

const compare = (engram: Set<string>, cruiser: Set<string>) => {
  const inter = [...engram].filter((f) => cruiser.has(f)).length;
  const union = new Set([...engram, ...cruiser]).size;
  return {
    engram: engram.size,
    cruiser: cruiser.size,
    common: inter,
    jaccard: union === 0 ? 1 : inter / union,
    precision: engram.size === 0 ? (cruiser.size === 0 ? 1 : 0) : inter / engram.size,
    recall: cruiser.size === 0 ? 1 : inter / cruiser.size,
  };
};

async function main(opts: Options, facts: Parameters<Parameters<typeof runBench>[0]['main']>[1]): Promise<number> {
  log(`indexing ${opts.repo} with Engram (${opts.backend})`);
  backend = await startBackend(opts.backend, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: undefined,
    env: {
      // The server's bootstrap org (`default`) may index the repository where it is.
      CODE_ORG_DIRS: `default=${opts.repo}`,
      EMBEDDER: 'builtin',
      CODE_PRECISE: String(opts.precise),
      // Resolving a fresh repository (no planner statistics yet) can outlast the 30 s default.
      DATABASE_STATEMENT_TIMEOUT_MS: '900000',
    },
  });
  const b = backend;
  const t0 = performance.now();
  const repo = await api<{ id: string }>(b, 'POST', '/v1/repos', { path: opts.repo });
  let status = '';
  let counts: Record<string, number> = {};
  let polls = 0;
  while (status !== 'indexed') {
    await new Promise((r) => setTimeout(r, 250));
    const r = await api<{
      status: string;
      lastError: string | null;
      counts: Record<string, number>;
      progress: { phase: string; filesDone: number; filesTotal: number };
    }>(b, 'GET', `/v1/repos/${repo.id}`);
    if (r.status === 'failed') throw new Error(`indexing failed: ${r.lastError ?? ''}`);
    status = r.status;
    counts = r.counts;
    if (++polls % 20 === 0) log(`… ${r.progress.phase} ${r.progress.filesDone}/${r.progress.filesTotal}`);
  }
  const indexMs = performance.now() - t0;
  log(`indexed in ${fmt(indexMs / 1000)} s: ${JSON.stringify(counts)}`);

  log(`cruising ${opts.dir} with dependency-cruiser`);
  const c0 = performance.now();
  const reverse = await cruiseReverse(opts.repo, opts.dir);
  const cruiseMs = performance.now() - c0;
  const files = [...new Set([...reverse.keys(), ...[...reverse.values()].flatMap((s) => [...s])])]
    .filter((f) => /\.(ts|tsx|js|mjs|cjs|mts|cts|jsx)$/.test(f))
    .sort();
  const step = Math.max(1, files.length / opts.samples);
  const samples = Array.from(
    { length: Math.min(opts.samples, files.length) },
    (_, i) => files[Math.floor(i * step)],
  ).filter((f): f is string => f !== undefined);

  const rows: Array<{ file: string } & ReturnType<typeof compare> & { ms: number; maxDepth: number }> = [];
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let crossChecked = 0;
  let crossCheckAgreed = 0;
  for (const [i, file] of samples.entries()) {
    const s0 = performance.now();
    const r = await api<Traversal>(
      b,
      'GET',
      `/v1/code/impact?file=${encodeURIComponent(file)}&depth=10&limit=5000&minConfidence=${opts.minConfidence}`,
    );
    const ms = performance.now() - s0;
    const engram = new Set(
      r.byDepth.flatMap((g) => g.items.map((h) => h.node.path ?? '')).filter((p) => p.startsWith(`${opts.dir}/`)),
    );
    const cruiser = reaches(reverse, file);
    if (i < 3) {
      const cli = await reachesViaCruise(opts.repo, opts.dir, file);
      crossChecked += 1;
      if (cli.size === cruiser.size && [...cli].every((f) => cruiser.has(f))) crossCheckAgreed += 1;
    }
    const c = compare(engram, cruiser);
    tp += c.common;
    fp += c.engram - c.common;
    fn += c.cruiser - c.common;
    rows.push({ file, ...c, ms, maxDepth: Math.max(0, ...r.byDepth.map((g) => g.depth)) });
  }
  const overall = {
    samples: rows.length,
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
    recall: tp + fn === 0 ? 1 : tp / (tp + fn),
    jaccard: tp + fp + fn === 0 ? 1 : tp / (tp + fp + fn),
    meanJaccard: rows.reduce((s, r) => s + r.jaccard, 0) / Math.max(1, rows.length),
    exact: rows.filter((r) => r.jaccard === 1).length,
  };

  process.stdout.write(
    `\nFile-level impact: Engram (confidence ≥ ${opts.minConfidence}) vs dependency-cruiser --reaches (${opts.dir}, ${files.length} files)\n`,
  );
  process.stdout.write(
    `${table(
      ['file', 'engram', 'cruiser', 'common', 'jaccard', 'precision', 'recall', 'ms'],
      rows.map((r) => [
        r.file,
        r.engram,
        r.cruiser,
        r.common,
        fmt(r.jaccard, 2),
        fmt(r.precision, 2),
        fmt(r.recall, 2),
        fmt(r.ms, 1),
      ]),
    )}\n`,
  );
  process.stdout.write(
    `overall (micro): precision ${fmt(overall.precision, 3)}  recall ${fmt(overall.recall, 3)}  jaccard ${fmt(overall.jaccard, 3)}  mean jaccard ${fmt(overall.meanJaccard, 3)}  identical sets ${overall.exact}/${overall.samples}\n`,
  );
  process.stdout.write(
    `--reaches cross-check (CLI API vs reverse closure): ${crossCheckAgreed}/${crossChecked} agree\n`,
  );

  log('timing impact at depth 5');
  const map = await api<{ symbols: Array<{ symbol: { symbol: string } }> }>(
    b,
    'GET',
    `/v1/code/repo-map?repo=${repo.id}&tokens=100000`,
  );
  const all = map.symbols.map((s) => s.symbol.symbol);
  const pick = Array.from(
    { length: Math.min(opts.symbols, all.length) },
    (_, i) => all[Math.floor((i * all.length) / Math.min(opts.symbols, all.length))],
  ).filter((s): s is string => s !== undefined);
  for (const s of pick.slice(0, 20)) await api(b, 'GET', `/v1/code/impact?symbol=${encodeURIComponent(s)}&depth=5`);
  const latencies: number[] = [];
  const hits: number[] = [];
  for (const s of pick) {
    const s0 = performance.now();
    const r = await api<Traversal>(b, 'GET', `/v1/code/impact?symbol=${encodeURIComponent(s)}&depth=5`);
    latencies.push(performance.now() - s0);
    hits.push(r.total);
  }
  const lat = summarize(latencies);
  const hitSummary = summarize(hits);
  process.stdout.write(`\nimpact at depth 5 (symbol level, HTTP round trip), ${lat.count} symbols\n`);
  process.stdout.write(
    `${table(
      ['query', 'n', 'hits p50', 'hits max', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'target'],
      [
        [
          'impact depth 5',
          lat.count,
          hitSummary.p50,
          hitSummary.max,
          fmt(lat.p50, 1),
          fmt(lat.p95, 1),
          fmt(lat.p99, 1),
          fmt(lat.max, 1),
          lat.p95 <= 50 ? 'p95 ≤ 50 ms: met' : 'p95 ≤ 50 ms: MISSED',
        ],
      ],
    )}\n`,
  );

  writeResult(opts.out, 'code-impact', facts, {
    options: { ...opts },
    backend: opts.backend,
    repo: { path: opts.repo, counts, indexSeconds: round(indexMs / 1000, 1) },
    cruiseSeconds: round(cruiseMs / 1000, 1),
    comparison: {
      overall: {
        ...overall,
        precision: round(overall.precision, 3),
        recall: round(overall.recall, 3),
        jaccard: round(overall.jaccard, 3),
        meanJaccard: round(overall.meanJaccard, 3),
      },
      reachesCrossCheck: { checked: crossChecked, agreed: crossCheckAgreed },
      samples: rows.map((r) => ({
        ...r,
        jaccard: round(r.jaccard, 3),
        precision: round(r.precision, 3),
        recall: round(r.recall, 3),
        ms: round(r.ms, 1),
      })),
    },
    impactDepth5: { latencyMs: roundSummary(lat), hits: roundSummary(hitSummary), targetP95Ms: 50, met: lat.p95 <= 50 },
  });
  return 0;
}

runBench({
  help: HELP,
  parse,
  main: async (opts, facts) => {
    try {
      return await main(opts, facts);
    } finally {
      await backend?.close();
    }
  },
  cleanup: async () => {
    await backend?.close();
  },
});
