/**
 * Search benchmark: ingest N memories through the REST API, then measure
 * lexical / vector / hybrid search latency and throughput at several
 * concurrencies, on embedded PGlite and on PostgreSQL.
 *
 *   npm run bench:search -- [--n 10000] [--backends pglite,postgres] [--queries 200] [--concurrency 1,16]
 *
 * See docs/benchmarks.md for what is measured and how to read the results.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import {
  BACKENDS,
  DEFAULT_DATABASE_URL,
  configSummary,
  startBackend,
  type Backend,
  type BackendName,
} from './lib/backend.ts';
import { memoryAt, queryAt, vocabularySize } from './lib/corpus.ts';
import { gitCommit, machine, resultFileName } from './lib/facts.ts';
import { postJson, progress, runPool } from './lib/load.ts';
import { markdownTable, round, summarize, table, type LatencySummary } from './lib/stats.ts';

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

const positiveInt = (name: string, v: string | undefined, def: number): number => {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer (got ${v})`);
  return n;
};
const list = (v: string | undefined, def: string): string[] =>
  (v ?? def)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: 'string' },
      backends: { type: 'string' },
      queries: { type: 'string' },
      concurrency: { type: 'string' },
      modes: { type: 'string' },
      limit: { type: 'string' },
      warmup: { type: 'string' },
      'ingest-concurrency': { type: 'string' },
      seed: { type: 'string' },
      'pool-max': { type: 'string' },
      'skip-analyze': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      reuse: { type: 'string' },
      'reuse-database': { type: 'string' },
      markdown: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  const backends = list(values.backends, BACKENDS.join(','));
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`unknown backend ${b}`);
  if (values.reuse !== undefined && backends.length !== 1) throw new Error('--reuse needs exactly one --backends');
  if (values['reuse-database'] !== undefined && values.reuse === undefined) {
    throw new Error('--reuse-database goes with --reuse <data dir>');
  }
  const modes = list(values.modes, MODES.join(','));
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
  return {
    help: values.help,
    n: positiveInt('n', values.n, 10_000),
    backends: backends as BackendName[],
    queries: positiveInt('queries', values.queries, 200),
    concurrency: list(values.concurrency, '1,16').map((c) => positiveInt('concurrency', c, 1)),
    modes: modes as Mode[],
    limit: positiveInt('limit', values.limit, 10),
    warmup: values.warmup === '0' ? 0 : positiveInt('warmup', values.warmup, 20),
    ingestConcurrency: positiveInt('ingest-concurrency', values['ingest-concurrency'], 8),
    seed: positiveInt('seed', values.seed, 42),
    poolMax: values['pool-max'] === undefined ? undefined : positiveInt('pool-max', values['pool-max'], 10),
    analyze: !values['skip-analyze'],
    keep: values.keep,
    reuse:
      values.reuse === undefined
        ? undefined
        : { dataDir: path.resolve(values.reuse), database: values['reuse-database'] },
    markdown: values.markdown,
    out: values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results'),
  };
}
type Options = ReturnType<typeof parseOptions>;

interface IngestResult {
  readonly n: number;
  readonly created: number;
  readonly deduplicated: number;
  readonly errors: number;
  readonly wallMs: number;
  readonly perSecond: number;
  readonly latencyMs: LatencySummary;
  /** ANALYZEs run during ingestion (see maybeAnalyze). */
  readonly analyzeRuns: number;
  readonly firstError?: string;
}

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

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};
const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '-');
const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

async function ingest(b: Backend, opts: Options): Promise<IngestResult> {
  const endpoint = `${b.url}/v1/memories`;
  const latencies: number[] = [];
  let created = 0;
  let deduplicated = 0;
  let errors = 0;
  let firstError: string | undefined;
  // Stand-in for autovacuum during ingestion (off on the embedded store and on
  // some servers): without fresh statistics the per-insert plans go bad as the
  // table grows (docs/benchmarks.md). analyze() only acts past 50 rows + 10 %.
  const analyzeEvery = Math.max(200, Math.floor(opts.n / 100));
  let analyzing: Promise<void> | undefined;
  let analyzeRuns = 0;
  let sinceCheck = 0;
  const maybeAnalyze = () => {
    if (!opts.analyze || analyzing !== undefined || ++sinceCheck < analyzeEvery) return;
    sinceCheck = 0;
    analyzing = b.server.engram.system
      .analyze()
      .then((ran) => {
        if (ran) analyzeRuns += 1;
      })
      .catch((e: unknown) => log(`${b.name} ANALYZE during ingestion failed: ${errText(e)}`))
      .finally(() => {
        analyzing = undefined;
      });
  };
  const t0 = performance.now();
  const tick = progress(opts.n, 5, (done) => {
    const s = (performance.now() - t0) / 1000;
    const rate = done / s;
    log(
      `${b.name} ingest ${done}/${opts.n} (${Math.round((done / opts.n) * 100)}%) ` +
        `${fmt(rate, 0)} memories/s, eta ${fmt((opts.n - done) / rate, 0)} s`,
    );
  });
  const { wallMs } = await runPool(opts.n, opts.ingestConcurrency, async (i) => {
    const m = memoryAt(opts.seed, i);
    const r = await postJson(endpoint, b.apiKey, m);
    latencies.push(r.ms);
    if (r.status === 201) created += 1;
    else if (r.status === 200) deduplicated += 1;
    else {
      errors += 1;
      firstError ??= `HTTP ${r.status}: ${r.body.slice(0, 300)}`;
    }
    tick();
    maybeAnalyze();
  });
  await analyzing;
  const perSecond = opts.n / (wallMs / 1000);
  log(
    `${b.name} ingested ${created} memories (${deduplicated} duplicates, ${errors} errors) ` +
      `in ${fmt(wallMs / 1000)} s: ${fmt(perSecond, 0)} memories/s`,
  );
  if (firstError !== undefined) log(`${b.name} first ingest error: ${firstError}`);
  return {
    n: opts.n,
    created,
    deduplicated,
    errors,
    wallMs: round(wallMs),
    perSecond: round(perSecond),
    latencyMs: roundSummary(summarize(latencies)),
    analyzeRuns,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

const roundSummary = (s: LatencySummary): LatencySummary => ({
  count: s.count,
  min: round(s.min),
  mean: round(s.mean),
  p50: round(s.p50),
  p95: round(s.p95),
  p99: round(s.p99),
  max: round(s.max),
});

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

async function databaseBytes(b: Backend): Promise<number | undefined> {
  try {
    const r = await sql<{ n: string }>`SELECT pg_database_size(current_database())::text AS n`.execute(
      b.server.engram.database.adminDb,
    );
    return Number(r.rows[0]?.n);
  } catch {
    return undefined;
  }
}

async function countMemories(b: Backend): Promise<number> {
  const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM memories`.execute(b.server.engram.database.adminDb);
  return r.rows[0]?.n ?? 0;
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
    let ing: IngestResult | undefined;
    if (!b.reused) {
      ing = await ingest(b, opts);
      if (ing.created === 0) throw new Error(`nothing was ingested: ${ing.firstError ?? 'unknown error'}`);
    }
    const n = await countMemories(b);
    if (b.reused)
      log(`${name}: reusing ${b.dataDir}${b.database === undefined ? '' : ` / ${b.database}`}: ${n} memories`);
    if (opts.analyze) {
      const t = performance.now();
      await b.server.engram.system.analyze(true);
      log(`${name}: ANALYZE took ${fmt(performance.now() - t, 0)} ms`);
    }
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

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const startedAt = new Date();
  // Taken before the server starts: the code measured is the code at this commit.
  const commit = gitCommit();
  const m = machine();
  log(
    `${opts.reuse === undefined ? `N=${opts.n}` : `reusing ${opts.reuse.dataDir}`}, backends=${opts.backends.join(',')}, queries=${opts.queries}, concurrency=${opts.concurrency.join(',')}, ` +
      `limit=${opts.limit}; ${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}`,
  );

  const results: BackendResult[] = [];
  for (const name of opts.backends) {
    try {
      results.push(await benchBackend(name, opts));
    } catch (e) {
      log(`${name} failed: ${errText(e)}`);
      results.push({ backend: name, info: {}, config: {}, runs: [], error: errText(e) });
    }
  }

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

  const finishedAt = new Date();
  mkdirSync(opts.out, { recursive: true });
  const file = path.join(opts.out, resultFileName('search', startedAt));
  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        benchmark: 'search',
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        commit,
        machine: m,
        options: { ...recorded, vocabularyWords: vocabularySize() },
        results,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`\nResults written to ${path.relative(process.cwd(), file)}\n`);
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

// Ctrl-C still stops the server and drops the database.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    const b = active;
    void (b === undefined ? Promise.resolve() : b.close()).finally(() => process.exit(130));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    log(`failed: ${errText(e)}`);
    process.exitCode = 1;
  },
);
