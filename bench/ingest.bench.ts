/**
 * Bulk ingestion benchmark: N memories through POST /v1/memories/batch, and
 * a smaller number through single POST /v1/memories for comparison, on
 * embedded PGlite and on PostgreSQL.
 *
 *   npm run bench:ingest -- [--n 20000] [--single-n 2000] [--backends pglite,postgres]
 *
 * Prints memories/s for both paths, how long after the last batch was
 * acknowledged a lexical search finds it, and how long the background
 * embedding jobs take to give every memory its vector.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { DEFAULT_DATABASE_URL, configSummary, startBackend, type Backend, type BackendName } from './lib/backend.ts';
import {
  STORE_OPTIONS,
  errText,
  fmt,
  forEachBackend,
  log,
  positiveInt,
  runBench,
  storeOptions,
  writeResult,
  type BenchFacts,
} from './lib/cli.ts';
import { memoryAt } from './lib/corpus.ts';
import { countMemories, databaseBytes, ingest, type IngestResult } from './lib/ingest.ts';
import { postJson, runPool } from './lib/load.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

const HELP = `Usage: npm run bench:ingest -- [options]

  --n <count>                 memories through the batch endpoint per backend (default 20000)
  --batch-size <n>            memories per batch request, 1–1000 (default 1000)
  --batch-concurrency <c>     batch requests in flight (default 1: one after another, like engram import)
  --single-n <count>          memories through single POST /v1/memories first (default 2000; 0: skip)
  --ingest-concurrency <c>    concurrent single POSTs (default 8)
  --backends <list>           pglite,postgres (default both)
  --seed <int>                corpus seed (default 42)
  --pool-max <n>              DATABASE_POOL_MAX for postgres (default: server default)
  --jobs-concurrency <n>      JOBS_CONCURRENCY of the server (default: server default, 2; 0: no
                              embedding during the run, so vectors are not waited for)
  --vector-timeout <s>        how long to wait for every vector (default 900)
  --skip-analyze              do not refresh planner statistics while ingesting
  --keep                      keep the database / data dir afterwards
  --markdown                  also print the table as Markdown
  --out <dir>                 where to write the JSON (default bench/results)

The server runs as in production but with rate limits off: its job worker
embeds the batches in the background (JOBS_CONCURRENCY, default 2) while the
next batches arrive, on the same cores. Single POSTs embed inline. Between
batches the benchmark refreshes planner statistics through SystemStore.analyze()
past autovacuum's threshold, as bench:search does (REEMBED_INTERVAL_MS=0 turns
the server's own background ANALYZE off).

Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), VALKEY_URL (optional,
postgres backend only). Both must point at 127.0.0.1.
`;

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...STORE_OPTIONS,
      n: { type: 'string' },
      'batch-size': { type: 'string' },
      'batch-concurrency': { type: 'string' },
      'single-n': { type: 'string' },
      'vector-timeout': { type: 'string' },
      'jobs-concurrency': { type: 'string' },
      'skip-analyze': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.reuse !== undefined) throw new Error('bench:ingest measures writes into a fresh store: no --reuse');
  const batchSize = positiveInt('batch-size', values['batch-size'], 1000);
  if (batchSize > 1000) throw new Error('--batch-size is at most 1000');
  return {
    ...storeOptions(values),
    n: positiveInt('n', values.n, 20_000),
    batchSize,
    batchConcurrency: positiveInt('batch-concurrency', values['batch-concurrency'], 1),
    singleN: values['single-n'] === '0' ? 0 : positiveInt('single-n', values['single-n'], 2_000),
    vectorTimeoutS: positiveInt('vector-timeout', values['vector-timeout'], 900),
    jobsConcurrency:
      values['jobs-concurrency'] === undefined
        ? undefined
        : values['jobs-concurrency'] === '0'
          ? 0
          : positiveInt('jobs-concurrency', values['jobs-concurrency'], 2),
    analyze: !values['skip-analyze'],
  };
}
type Options = ReturnType<typeof parseOptions>;

interface BatchResult {
  readonly n: number;
  readonly batches: number;
  readonly created: number;
  readonly existing: number;
  readonly failed: number;
  readonly errors: number;
  readonly wallMs: number;
  readonly perSecond: number;
  /** Per batch request. */
  readonly latencyMs: LatencySummary;
  /** From the last batch's response to a lexical search that returns its last memory. */
  readonly lexicalVisibleMs: number | undefined;
  readonly lexicalAttempts: number;
  /** From the last batch's response until every memory of the store has a vector. */
  readonly vectorsCompleteMs: number | undefined;
  readonly embedJobs: number;
  readonly analyzeRuns: number;
  readonly firstError?: string;
}

interface BackendResult {
  readonly backend: BackendName;
  readonly info: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly single?: IngestResult;
  readonly batch?: BatchResult;
  readonly memories?: number;
  readonly databaseBytes?: number;
  readonly error?: string;
}

/** The corpus offset of the batch phase: its memories differ from the single phase's (seed + 1). */
const batchItem = (opts: Options, i: number) => memoryAt(opts.seed, i);

async function sqlCount(b: Backend, what: 'embeddings' | 'jobs'): Promise<number> {
  const db = b.server.engram.database.adminDb;
  const r =
    what === 'embeddings'
      ? await sql<{ n: number }>`SELECT count(*)::int AS n FROM memory_embeddings`.execute(db)
      : await sql<{ n: number }>`SELECT count(*)::int AS n FROM jobs WHERE kind = 'embed_memories'`.execute(db);
  return r.rows[0]?.n ?? 0;
}

async function batchPhase(b: Backend, opts: Options): Promise<BatchResult> {
  const endpoint = `${b.url}/v1/memories/batch`;
  const batches = Math.ceil(opts.n / opts.batchSize);
  const latencies: number[] = [];
  let created = 0;
  let existing = 0;
  let failed = 0;
  let errors = 0;
  let done = 0;
  let firstError: string | undefined;
  let analyzeRuns = 0;
  let analyzing: Promise<void> | undefined;
  let lastAckAt = 0;
  const t0 = performance.now();
  const { wallMs } = await runPool(batches, opts.batchConcurrency, async (k) => {
    const from = k * opts.batchSize;
    const items = Array.from({ length: Math.min(opts.batchSize, opts.n - from) }, (_, j) => batchItem(opts, from + j));
    const r = await postJson(endpoint, b.apiKey, { items });
    latencies.push(r.ms);
    lastAckAt = performance.now();
    if (r.status !== 200) {
      errors += 1;
      firstError ??= `HTTP ${r.status}: ${r.body.slice(0, 300)}`;
      return;
    }
    const body = JSON.parse(r.body) as { created: number; existing: number; failed: number };
    created += body.created;
    existing += body.existing;
    failed += body.failed;
    done += items.length;
    if (k % Math.max(1, Math.floor(batches / 10)) === 0 || done === opts.n) {
      const s = (performance.now() - t0) / 1000;
      log(`${b.name} batch ${done}/${opts.n}: ${fmt(done / s, 0)} memories/s`);
    }
    // A stand-in for autovacuum (acts only past 50 rows + 10 %), in the background like it.
    if (opts.analyze && analyzing === undefined) {
      analyzing = b.server.engram.system
        .analyze()
        .then((ran) => {
          if (ran) analyzeRuns += 1;
        })
        .catch((e: unknown) => log(`${b.name} ANALYZE failed: ${errText(e)}`))
        .finally(() => {
          analyzing = undefined;
        });
    }
  });
  await analyzing;

  // The last memory of the last batch, found by its own words and its corpus index.
  const last = batchItem(opts, opts.n - 1);
  const query = last.content.split(/\s+/).slice(0, 8).join(' ');
  let lexicalVisibleMs: number | undefined;
  let lexicalAttempts = 0;
  for (let i = 0; i < 100 && lexicalVisibleMs === undefined; i++) {
    lexicalAttempts += 1;
    const r = await postJson(`${b.url}/v1/memories/search`, b.apiKey, {
      query,
      mode: 'lexical',
      limit: 10,
      filters: { metadata: { n: opts.n - 1 } },
    });
    const hits = r.status === 200 ? (JSON.parse(r.body) as { results: unknown[] }).results.length : 0;
    if (hits > 0) lexicalVisibleMs = performance.now() - lastAckAt;
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const embedJobs = await sqlCount(b, 'jobs');
  const total = await countMemories(b);
  let vectorsCompleteMs: number | undefined;
  // Without a worker nothing embeds the batches: do not wait for it.
  const deadline = performance.now() + opts.vectorTimeoutS * 1000;
  let lastLog = 0;
  while (opts.jobsConcurrency !== 0) {
    const have = await sqlCount(b, 'embeddings');
    if (have >= total) {
      vectorsCompleteMs = performance.now() - lastAckAt;
      break;
    }
    if (performance.now() > deadline) {
      log(`${b.name}: ${have}/${total} vectors after ${opts.vectorTimeoutS} s; giving up waiting`);
      break;
    }
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(`${b.name}: ${have}/${total} vectors`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }

  return {
    n: opts.n,
    batches,
    created,
    existing,
    failed,
    errors,
    wallMs: round(wallMs),
    perSecond: round(done / (wallMs / 1000)),
    latencyMs: roundSummary(summarize(latencies)),
    lexicalVisibleMs: lexicalVisibleMs === undefined ? undefined : round(lexicalVisibleMs),
    lexicalAttempts,
    vectorsCompleteMs: vectorsCompleteMs === undefined ? undefined : round(vectorsCompleteMs),
    embedJobs,
    analyzeRuns,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

let active: Backend | undefined;

async function benchBackend(name: BackendName, opts: Options): Promise<BackendResult> {
  log(`${name}: starting server`);
  const b = await startBackend(name, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: name === 'postgres' ? process.env.VALKEY_URL : undefined,
    env: {
      ...(opts.poolMax === undefined ? {} : { DATABASE_POOL_MAX: String(opts.poolMax) }),
      ...(opts.jobsConcurrency === undefined ? {} : { JOBS_CONCURRENCY: String(opts.jobsConcurrency) }),
    },
  });
  active = b;
  try {
    let single: IngestResult | undefined;
    if (opts.singleN > 0) {
      log(`${name}: ${opts.singleN} single POST /v1/memories, ${opts.ingestConcurrency} in flight`);
      single = await ingest(b, {
        n: opts.singleN,
        seed: opts.seed + 1,
        concurrency: opts.ingestConcurrency,
        analyze: opts.analyze,
      });
    }
    log(`${name}: ${opts.n} memories in batches of ${opts.batchSize}, ${opts.batchConcurrency} in flight`);
    const batch = await batchPhase(b, opts);
    log(
      `${name}: batch ${fmt(batch.perSecond, 0)} memories/s; lexical search found the last batch ` +
        `${batch.lexicalVisibleMs === undefined ? 'never' : `${fmt(batch.lexicalVisibleMs, 0)} ms`} after it was acknowledged; ` +
        `every vector after ${batch.vectorsCompleteMs === undefined ? '—' : `${fmt(batch.vectorsCompleteMs / 1000)} s`}`,
    );
    if (batch.firstError !== undefined) log(`${name}: first batch error: ${batch.firstError}`);
    const size = await databaseBytes(b);
    return {
      backend: name,
      info: b.info,
      config: configSummary(b),
      ...(single === undefined ? {} : { single }),
      batch,
      memories: await countMemories(b),
      ...(size === undefined ? {} : { databaseBytes: size }),
    };
  } finally {
    await b.close({ keep: opts.keep });
    active = undefined;
  }
}

async function main(opts: Options, facts: BenchFacts): Promise<number> {
  const m = facts.machine;
  log(
    `N=${opts.n} in batches of ${opts.batchSize}, single N=${opts.singleN}, backends=${opts.backends.join(',')}; ` +
      `${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}`,
  );
  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts),
    (name, error): BackendResult => ({ backend: name, info: {}, config: {}, error }),
  );

  const header = [
    'backend',
    'path',
    'N',
    'wall s',
    'memories/s',
    'req p50 ms',
    'req p95 ms',
    'lexical after',
    'vectors after',
  ];
  const rows = results.flatMap((r) => {
    const out: string[][] = [];
    if (r.single !== undefined) {
      out.push([
        r.backend,
        `single POST ×${opts.ingestConcurrency}`,
        String(r.single.n),
        fmt(r.single.wallMs / 1000),
        fmt(r.single.perSecond, 0),
        fmt(r.single.latencyMs.p50),
        fmt(r.single.latencyMs.p95),
        'at once',
        'inline',
      ]);
    }
    if (r.batch !== undefined) {
      const x = r.batch;
      out.push([
        r.backend,
        `batch ${opts.batchSize} ×${opts.batchConcurrency}`,
        String(x.n),
        fmt(x.wallMs / 1000),
        fmt(x.perSecond, 0),
        fmt(x.latencyMs.p50),
        fmt(x.latencyMs.p95),
        x.lexicalVisibleMs === undefined
          ? 'never'
          : `${fmt(x.lexicalVisibleMs, 0)} ms (${x.lexicalAttempts === 1 ? '1st search' : `${x.lexicalAttempts} searches`})`,
        x.vectorsCompleteMs === undefined ? '—' : `${fmt(x.vectorsCompleteMs / 1000)} s`,
      ]);
    }
    if (r.error !== undefined) out.push([r.backend, `failed: ${r.error}`, '', '', '', '', '', '', '']);
    return out;
  });
  process.stdout.write(`\nIngestion benchmark (builtin embedder, rate limits off)\n\n${table(header, rows)}\n`);
  if (opts.markdown) process.stdout.write(`\n${markdownTable(header, rows)}\n`);

  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeResult(opts.out, 'ingest', facts, { options: recorded, results });
  const failedBatches = results.some((r) => (r.batch?.errors ?? 0) > 0 || r.error !== undefined);
  return failedBatches ? 1 : 0;
}

// Ctrl-C still stops the server and drops the database.
runBench({
  help: HELP,
  parse: parseOptions,
  main,
  cleanup: async () => {
    await active?.close().catch((e: unknown) => log(`cleanup failed: ${errText(e)}`));
  },
});
