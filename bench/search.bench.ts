/**
 * Search benchmark: ingest N memories through the REST API (in batches of
 * 1,000 by default), then measure default / lexical / vector / hybrid search
 * latency and throughput at several concurrencies, with and without a user
 * scope, on embedded PGlite and on PostgreSQL.
 *
 *   npm run bench:search -- [--n 10000] [--users 1000] [--backends pglite,postgres] [--queries 200] [--concurrency 1,16]
 *
 * See docs/benchmarks.md for what is measured and how to read the results.
 */
import { performance } from 'node:perf_hooks';
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
import { sql } from 'kysely';
import { CorpusUsers, queryAt, vocabularySize } from './lib/corpus.ts';
import { databaseBytes, prepareStore, type IngestPath, type IngestResult } from './lib/ingest.ts';
import { postJson, runPool } from './lib/load.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

/** `default` sends no `mode` field: what a client that does not choose gets (the server runs hybrid). */
const MODES = ['default', 'lexical', 'vector', 'hybrid'] as const;
type Mode = (typeof MODES)[number];
type ScopeKind = 'unscoped' | 'scoped';

const HELP = `Usage: npm run bench:search -- [options]

  --n <count>                 memories to ingest per backend (default 10000)
  --users <n>                 spread the memories over n users (user-0 …); default: the
                              corpus's 25 people, on 70 % of the memories
  --scoped, --unscoped        search only with scope {user} / only without a scope
                              (default: both, as separate rows)
  --backends <list>           pglite,postgres (default both)
  --queries <count>           measured queries per mode, scope and concurrency (default 200)
  --concurrency <list>        concurrent search requests, e.g. 1,16 (default 1,16)
  --modes <list>              default,lexical,vector,hybrid (default all; default = no mode field)
  --limit <k>                 results per search (default 10)
  --warmup <count>            unmeasured queries per mode and scope first (default 20)
  --ingest <path>             batch: POST /v1/memories/batch of 1,000 (default);
                              single: one POST /v1/memories per memory
  --ingest-concurrency <c>    requests in flight while ingesting (default 1 batch / 8 single)
  --vector-timeout <s>        longest wait for every memory's vector before searching (default 3600)
  --seed <int>                corpus and query seed (default 42)
  --pool-max <n>              DATABASE_POOL_MAX for postgres (default: server default)
  --skip-analyze              do not refresh planner statistics during and after ingestion (see below)
  --keep                      keep the database / data dir afterwards (for EXPLAIN or --reuse)
  --reuse <dir>               measure search on a store kept by --keep (no ingestion; one backend)
  --reuse-database <name>     with --reuse on postgres: the kept engram_bench_… database
  --markdown                  also print the table as Markdown
  --out <dir>                 where to write the JSON (default bench/results)

Before measuring vector, hybrid or default the benchmark waits until every
memory has a vector (the batch path embeds in background jobs).

A scoped search asks as the user of a random corpus memory that contains one
of the query's words, so that user's memories answer it. With --reuse, pass the
same --users and --seed as the run that kept the store.

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
      users: { type: 'string' },
      scoped: { type: 'boolean', default: false },
      unscoped: { type: 'boolean', default: false },
      ingest: { type: 'string' },
      'vector-timeout': { type: 'string' },
      'skip-analyze': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const modes = list(values.modes, MODES.join(','));
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
  const ingestPath: IngestPath = values.ingest === 'single' ? 'single' : 'batch';
  if (values.ingest !== undefined && values.ingest !== ingestPath) {
    throw new Error(`--ingest is batch or single (got ${values.ingest})`);
  }
  const scopes: ScopeKind[] =
    values.scoped === values.unscoped ? ['unscoped', 'scoped'] : values.scoped ? ['scoped'] : ['unscoped'];
  const store = storeOptions(values);
  return {
    ...store,
    // One batch after another by default, as `engram import` sends them.
    ingestConcurrency:
      values['ingest-concurrency'] === undefined && ingestPath === 'batch' ? 1 : store.ingestConcurrency,
    ingestPath,
    users: values.users === undefined ? undefined : positiveInt('users', values.users, 1),
    scopes,
    vectorTimeoutS: positiveInt('vector-timeout', values['vector-timeout'], 3600),
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
  /** `scoped`: every request has scope {user} of a user with matching memories. */
  readonly scope: ScopeKind;
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
  /** The `mode` of the answers, by count (`default` should be served as hybrid). */
  readonly servedModes: Record<string, number>;
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
  /** Distinct users in the store. */
  readonly users?: number;
  readonly runs: RunResult[];
  readonly error?: string;
}

/** The i-th search body: the corpus query, with the user of a matching memory when scoped. */
function searchBody(opts: Options, users: CorpusUsers | undefined, mode: Mode, scope: ScopeKind, i: number) {
  const query = queryAt(opts.seed, i);
  let user: string | undefined;
  if (scope === 'scoped') {
    user = users?.userFor(query, i);
    if (user === undefined) throw new Error('no corpus memory has a user to scope a search to');
  }
  return {
    query,
    ...(mode === 'default' ? {} : { mode }),
    limit: opts.limit,
    ...(user === undefined ? {} : { scope: { user } }),
  };
}

async function searchRun(
  b: Backend,
  opts: Options,
  users: CorpusUsers | undefined,
  mode: Mode,
  scope: ScopeKind,
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
  const servedModes: Record<string, number> = {};
  let firstError: string | undefined;
  const { wallMs } = await runPool(count, concurrency, async (i) => {
    const body = searchBody(opts, users, mode, scope, queryOffset + i);
    const r = await postJson(endpoint, b.apiKey, body);
    if (r.status !== 200) {
      errors += 1;
      firstError ??= `HTTP ${r.status} for ${JSON.stringify(body)}: ${r.body.slice(0, 300)}`;
      return;
    }
    latencies.push(r.ms);
    const answer = JSON.parse(r.body) as { results: unknown[]; degraded: string[]; mode: string };
    results += answer.results.length;
    if (answer.results.length === 0) empty += 1;
    if (answer.degraded.length > 0) degraded += 1;
    servedModes[answer.mode] = (servedModes[answer.mode] ?? 0) + 1;
  });
  const ok = count - errors;
  return {
    mode,
    scope,
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
    servedModes,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/**
 * Distinct users in the store; throws when it does not look like the corpus
 * `--users` describes (a reused store seeded with another --users).
 */
async function distinctUsers(b: Backend, users: number | undefined): Promise<number> {
  const r = await sql<{ users: number; numbered: number; without: number }>`
    SELECT count(DISTINCT scope_user)::int AS users,
      count(DISTINCT scope_user) FILTER (WHERE scope_user LIKE 'user-%')::int AS numbered,
      count(*) FILTER (WHERE scope_user IS NULL)::int AS without
    FROM memories`.execute(b.server.engram.database.adminDb);
  const row = r.rows[0] ?? { users: 0, numbered: 0, without: 0 };
  const fits =
    users === undefined ? row.numbered === 0 : row.without === 0 && row.numbered === row.users && row.users <= users;
  if (!fits) {
    throw new Error(
      `the store has ${row.users} users (${row.numbered} named user-…, ${row.without} memories without one): ` +
        `not a corpus of ${users === undefined ? 'the default users' : `--users ${users}`}`,
    );
  }
  return row.users;
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
    const needsVectors = opts.modes.some((m) => m !== 'lexical');
    const { n, ingest: ing } = await prepareStore(b, {
      n: opts.n,
      seed: opts.seed,
      concurrency: opts.ingestConcurrency,
      analyze: opts.analyze,
      users: opts.users,
      path: opts.ingestPath,
      waitForVectorsS: needsVectors ? opts.vectorTimeoutS : undefined,
    });
    const size = await databaseBytes(b);
    const storeUsers = await distinctUsers(b, opts.users);
    let users: CorpusUsers | undefined;
    if (opts.scopes.includes('scoped')) {
      const t = performance.now();
      // Corpus memories 0..n-1 are all in the store: one not stored is a
      // duplicate of an earlier one, in the same scope (n ≤ memories ingested).
      users = new CorpusUsers(opts.seed, n, opts.users);
      log(`${name}: indexed ${users.size} corpus memories by user in ${fmt(performance.now() - t, 0)} ms`);
    }
    // Each run gets its own queries (warm-ups included), so cached query
    // embeddings never make a later run look faster — a scoped row's queries
    // too, drawn from the same generator as its unscoped row's; both backends
    // see the same sequence.
    let offset = 0;
    for (const mode of opts.modes) {
      for (const scope of opts.scopes) {
        if (opts.warmup > 0) {
          const w = await searchRun(b, opts, users, mode, scope, 1, offset, opts.warmup);
          offset += opts.warmup;
          if (w.errors > 0) log(`${name} ${mode} ${scope} warm-up: ${w.errors} errors (${w.firstError ?? ''})`);
        }
        for (const c of opts.concurrency) {
          const r = await searchRun(b, opts, users, mode, scope, c, offset, opts.queries);
          offset += opts.queries;
          runs.push(r);
          log(
            `${name} ${mode} ${scope} c=${c}: p50 ${fmt(r.latencyMs.p50)} p95 ${fmt(r.latencyMs.p95)} ` +
              `p99 ${fmt(r.latencyMs.p99)} ms, ${fmt(r.reqPerSec)} req/s, ${r.errors} errors, ` +
              `${fmt(r.meanResults)} results/query, ${r.emptyResults} empty, served as ${JSON.stringify(r.servedModes)}`,
          );
          if (r.firstError !== undefined) log(`${name} ${mode} ${scope} c=${c} first error: ${r.firstError}`);
        }
      }
    }
    return {
      backend: name,
      n,
      users: storeUsers,
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
    `${opts.reuse === undefined ? `N=${opts.n}, ingest ${opts.ingestPath}` : `reusing ${opts.reuse.dataDir}`}, ` +
      `users=${opts.users ?? 'corpus people'}, backends=${opts.backends.join(',')}, modes=${opts.modes.join(',')}, ` +
      `${opts.scopes.join('+')}, queries=${opts.queries}, concurrency=${opts.concurrency.join(',')}, ` +
      `limit=${opts.limit}; ${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}`,
  );

  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts),
    (name, error): BackendResult => ({ backend: name, info: {}, config: {}, runs: [], error }),
  );

  const header = ['backend', 'mode', 'scope', 'conc', 'p50 ms', 'p95 ms', 'p99 ms', 'req/s', 'errors', 'empty'];
  const rows = results.flatMap((r) =>
    r.runs.map((x) => [
      r.backend,
      x.mode,
      x.scope,
      String(x.concurrency),
      fmt(x.latencyMs.p50),
      fmt(x.latencyMs.p95),
      fmt(x.latencyMs.p99),
      fmt(x.reqPerSec),
      String(x.errors),
      String(x.emptyResults),
    ]),
  );
  const ingestLines = results.flatMap((r) => {
    const i = r.ingest;
    if (i === undefined) return [];
    const how = i.path === 'batch' ? `${i.batches ?? 0} batches of 1,000` : 'single POSTs';
    const vectors =
      i.vectorsCompleteMs === undefined
        ? ''
        : `; every vector ${fmt(i.vectorsCompleteMs / 1000)} s after the last write`;
    return [
      `${r.backend}: ingested ${i.created} memories (${i.deduplicated} duplicates) in ${fmt(i.wallMs / 1000)} s ` +
        `(${fmt(i.perSecond, 0)}/s, ${how}, ${opts.ingestConcurrency} in flight)${vectors}`,
    ];
  });
  const sizes = [...new Set(results.map((r) => r.n ?? opts.n))].join('/');
  const userCounts = [...new Set(results.map((r) => r.users ?? 0))].join('/');
  process.stdout.write(
    `\nSearch benchmark, N=${sizes}, ${userCounts} users, limit=${opts.limit}, ${opts.queries} queries per row\n`,
  );
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
