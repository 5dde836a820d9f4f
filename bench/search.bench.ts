/**
 * Search benchmark: ingest N memories through the REST API, then measure
 * lexical / vector / hybrid search latency and throughput at several
 * concurrencies, on embedded PGlite and on PostgreSQL.
 *
 *   npm run bench:search -- [--n 10000] [--backends pglite,postgres] [--queries 200] [--concurrency 1,16]
 *
 * See docs/benchmarks.md for what is measured and how to read the results.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_DATABASE_URL, configSummary, startBackend, type Backend, type BackendName } from './lib/backend.ts';
import {
  STORE_OPTIONS,
  fmt,
  forEachBackend,
  list,
  log,
  positiveInt,
  runBench,
  storeOptions,
  writeResult,
  type BenchFacts,
} from './lib/cli.ts';
import { queryAt, vocabularySize } from './lib/corpus.ts';
import { databaseBytes, prepareStore, type IngestResult } from './lib/ingest.ts';
import { postJson, runPool } from './lib/load.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

const MODES = ['lexical', 'vector', 'hybrid'] as const;
type Mode = (typeof MODES)[number];

const HELP = `Usage: npm run bench:search -- [options]

  --n <count>                 memories to ingest per backend (default 10000)
  --backends <list>           pglite,postgres (default both)
  --queries <count>           measured queries per mode and concurrency (default 200)
  --concurrency <list>        concurrent search requests, e.g. 1,16 (default 1,16)
  --modes <list>              lexical,vector,hybrid (default all)
  --limit <k>                 results per search (default 10)
  --warmup <count>            unmeasured queries per mode first (default 20)
  --ingest-concurrency <c>    concurrent POST /v1/memories (default 8)
  --seed <int>                corpus and query seed (default 42)
  --pool-max <n>              DATABASE_POOL_MAX for postgres (default: server default)
  --skip-analyze              do not refresh planner statistics during and after ingestion (see below)
  --keep                      keep the database / data dir afterwards (for EXPLAIN or --reuse)
  --reuse <dir>               measure search on a store kept by --keep (no ingestion; one backend)
  --reuse-database <name>     with --reuse on postgres: the kept engram_bench_… database
  --markdown                  also print the table as Markdown
  --out <dir>                 where to write the JSON (default bench/results)

During ingestion (past autovacuum's threshold) and after it the benchmark
refreshes planner statistics through the server's own SystemStore.analyze(),
standing in for autovacuum (PostgreSQL) and for the embedded store's background
ANALYZE, which REEMBED_INTERVAL_MS=0 switches off.

Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), VALKEY_URL (optional,
postgres backend only). Both must point at 127.0.0.1.
`;

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...STORE_OPTIONS,
      n: { type: 'string' },
      queries: { type: 'string' },
      concurrency: { type: 'string' },
      modes: { type: 'string' },
      limit: { type: 'string' },
      warmup: { type: 'string' },
      'skip-analyze': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const modes = list(values.modes, MODES.join(','));
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
  return {
    ...storeOptions(values),
    n: positiveInt('n', values.n, 10_000),
    queries: positiveInt('queries', values.queries, 200),
    concurrency: list(values.concurrency, '1,16').map((c) => positiveInt('concurrency', c, 1)),
    modes: modes as Mode[],
    limit: positiveInt('limit', values.limit, 10),
    warmup: values.warmup === '0' ? 0 : positiveInt('warmup', values.warmup, 20),
    analyze: !values['skip-analyze'],
  };
}
type Options = ReturnType<typeof parseOptions>;

interface RunResult {
  readonly mode: Mode;
  readonly concurrency: number;
  readonly queries: number;
  readonly ok: number;
  readonly errors: number;
  readonly reqPerSec: number;
  readonly wallMs: number;
  /** Latency of successful requests. */
  readonly latencyMs: LatencySummary;
  readonly meanResults: number;
  readonly emptyResults: number;
  readonly degraded: number;
  readonly firstError?: string;
}

interface BackendResult {
  readonly backend: BackendName;
  /** Memories in the store when searching. */
  readonly n?: number;
  readonly reused?: { readonly dataDir: string; readonly database?: string | undefined };
  readonly info: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly ingest?: IngestResult;
  readonly analyzed?: boolean;
  readonly databaseBytes?: number;
  readonly runs: RunResult[];
  readonly error?: string;
}

async function searchRun(
  b: Backend,
  opts: Options,
  mode: Mode,
  concurrency: number,
  queryOffset: number,
  count: number,
): Promise<RunResult> {
  const endpoint = `${b.url}/v1/memories/search`;
  const latencies: number[] = [];
  let errors = 0;
  let results = 0;
  let empty = 0;
  let degraded = 0;
  let firstError: string | undefined;
  const { wallMs } = await runPool(count, concurrency, async (i) => {
    const query = queryAt(opts.seed, queryOffset + i);
    const r = await postJson(endpoint, b.apiKey, { query, mode, limit: opts.limit });
    if (r.status !== 200) {
      errors += 1;
      firstError ??= `HTTP ${r.status} for ${JSON.stringify(query)}: ${r.body.slice(0, 300)}`;
      return;
    }
    latencies.push(r.ms);
    const body = JSON.parse(r.body) as { results: unknown[]; degraded: string[] };
    results += body.results.length;
    if (body.results.length === 0) empty += 1;
    if (body.degraded.length > 0) degraded += 1;
  });
  const ok = count - errors;
  return {
    mode,
    concurrency,
    queries: count,
    ok,
    errors,
    reqPerSec: round(ok / (wallMs / 1000)),
    wallMs: round(wallMs),
    latencyMs: roundSummary(summarize(latencies)),
    meanResults: round(ok === 0 ? 0 : results / ok),
    emptyResults: empty,
    degraded,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

let active: Backend | undefined;

async function benchBackend(name: BackendName, opts: Options): Promise<BackendResult> {
  log(`${name}: starting server`);
  const b = await startBackend(name, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: name === 'postgres' ? process.env.VALKEY_URL : undefined,
    env: opts.poolMax === undefined ? {} : { DATABASE_POOL_MAX: String(opts.poolMax) },
    reuse: opts.reuse,
  });
  active = b;
  const runs: RunResult[] = [];
  try {
    log(`${name}: listening on ${b.url}${b.database === undefined ? '' : `, database ${b.database}`}`);
    const { n, ingest: ing } = await prepareStore(b, {
      n: opts.n,
      seed: opts.seed,
      concurrency: opts.ingestConcurrency,
      analyze: opts.analyze,
    });
    const size = await databaseBytes(b);
    // Each run gets its own queries (warm-ups included), so cached query
    // embeddings never make a later run look faster; both backends see the same sequence.
    let offset = 0;
    for (const mode of opts.modes) {
      if (opts.warmup > 0) {
        const w = await searchRun(b, opts, mode, 1, offset, opts.warmup);
        offset += opts.warmup;
        if (w.errors > 0) log(`${name} ${mode} warm-up: ${w.errors} errors (${w.firstError ?? ''})`);
      }
      for (const c of opts.concurrency) {
        const r = await searchRun(b, opts, mode, c, offset, opts.queries);
        offset += opts.queries;
        runs.push(r);
        log(
          `${name} ${mode} c=${c}: p50 ${fmt(r.latencyMs.p50)} p95 ${fmt(r.latencyMs.p95)} ` +
            `p99 ${fmt(r.latencyMs.p99)} ms, ${fmt(r.reqPerSec)} req/s, ${r.errors} errors, ` +
            `${fmt(r.meanResults)} results/query, ${r.emptyResults} empty`,
        );
        if (r.firstError !== undefined) log(`${name} ${mode} c=${c} first error: ${r.firstError}`);
      }
    }
    return {
      backend: name,
      n,
      ...(b.reused ? { reused: { dataDir: b.dataDir, database: b.database } } : {}),
      info: b.info,
      config: configSummary(b),
      ...(ing === undefined ? {} : { ingest: ing }),
      analyzed: opts.analyze,
      ...(size === undefined ? {} : { databaseBytes: size }),
      runs,
    };
  } finally {
    await b.close({ keep: opts.keep });
    active = undefined;
  }
}

async function main(opts: Options, facts: BenchFacts): Promise<number> {
  const m = facts.machine;
  log(
    `${opts.reuse === undefined ? `N=${opts.n}` : `reusing ${opts.reuse.dataDir}`}, backends=${opts.backends.join(',')}, queries=${opts.queries}, concurrency=${opts.concurrency.join(',')}, ` +
      `limit=${opts.limit}; ${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}`,
  );

  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts),
    (name, error): BackendResult => ({ backend: name, info: {}, config: {}, runs: [], error }),
  );

  const header = ['backend', 'mode', 'conc', 'p50 ms', 'p95 ms', 'p99 ms', 'req/s', 'errors'];
  const rows = results.flatMap((r) =>
    r.runs.map((x) => [
      r.backend,
      x.mode,
      String(x.concurrency),
      fmt(x.latencyMs.p50),
      fmt(x.latencyMs.p95),
      fmt(x.latencyMs.p99),
      fmt(x.reqPerSec),
      String(x.errors),
    ]),
  );
  const ingestLines = results
    .filter((r) => r.ingest !== undefined)
    .map(
      (r) =>
        `${r.backend}: ingested ${r.ingest?.created} memories in ${fmt((r.ingest?.wallMs ?? 0) / 1000)} s ` +
        `(${fmt(r.ingest?.perSecond ?? 0, 0)}/s at concurrency ${opts.ingestConcurrency})`,
    );
  const sizes = [...new Set(results.map((r) => r.n ?? opts.n))].join('/');
  process.stdout.write(`\nSearch benchmark, N=${sizes}, limit=${opts.limit}, ${opts.queries} queries per row\n`);
  process.stdout.write(`${ingestLines.join('\n')}\n\n${table(header, rows)}\n`);
  if (opts.markdown) process.stdout.write(`\n${markdownTable(header, rows)}\n`);

  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeResult(opts.out, 'search', facts, {
    options: { ...recorded, vocabularyWords: vocabularySize() },
    results,
  });
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

// Ctrl-C still stops the server and drops the database.
runBench({
  help: HELP,
  parse: parseOptions,
  main,
  cleanup: async () => {
    await active?.close();
  },
});
