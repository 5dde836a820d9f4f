/**
 * Load benchmark: many concurrent clients mixing writes and searches against
 * a seeded store, with the embedder up, then the same calls made in-process on
 * the services without HTTP (the engine's floor, printed beside the HTTP
 * figure as a ratio), then the HTTP load again while the embedder is killed
 * half-way through — throughput, p50/p95/p99, errors and degraded answers, on
 * embedded PGlite and on PostgreSQL.
 *
 *   npm run bench:load -- [--n 100000] [--backends pglite,postgres] [--connections 50] [--duration 60]
 *
 * See docs/benchmarks.md for what is measured and how to read the results.
 */
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { DEFAULT_DATABASE_URL, configSummary, startBackend, type Backend, type BackendName } from './lib/backend.ts';
import { forkChild, type Child } from './lib/child.ts';
import { trackHandlers, type HandlerTracker } from './lib/handlers-in-flight.ts';
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
import { vocabularySize } from './lib/corpus.ts';
import { databaseBytes, memoriesWithoutVector, prepareStore, type IngestResult } from './lib/ingest.ts';
import type { ClientMessage, LoadReport, LoadSpec } from './lib/load-client.ts';
import { runInProcess, type InProcessReport } from './lib/load-in-process.ts';
import { KIND_SEARCH, KIND_WRITE, type LoadRun, type LoadSamples } from './lib/load-mix.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

// The embedder cannot come back on the same address, so the kill goes last.
const PHASES = ['steady', 'in-process', 'embedder-kill'] as const;
type Phase = (typeof PHASES)[number];
const MODES = ['lexical', 'vector', 'hybrid'] as const;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOAD_CLIENT = path.join(HERE, 'lib', 'load-client.ts');
const FAKE_EMBEDDER = path.join(HERE, 'lib', 'fake-embedder.ts');

/** Ingestion rates measured at 100k (docs/benchmarks.md), for the up-front time estimate only. */
const SEED_PER_SECOND: Record<BackendName, number> = { postgres: 300, pglite: 110 };

const HELP = `Usage: npm run bench:load -- [options]

  --n <count>                 memories to seed per backend before the load (default 100000)
  --backends <list>           pglite,postgres (default both)
  --connections <c>           concurrent keep-alive connections, closed loop (default 50)
  --duration <seconds>        length of each measured phase (default 60)
  --write-ratio <r>           share of requests that are writes, 0..1 (default 0.2)
  --phases <list>             steady,in-process,embedder-kill (default all three, in that order)
  --warmup <seconds>          unmeasured load before the first phase, 0 for none (default 5)
  --mode <mode>               search mode: lexical, vector or hybrid (default hybrid)
  --limit <k>                 results per search (default 10)
  --timeout <seconds>         a request without an answer after this counts as a timeout (default 10)
  --seed <int>                corpus and query seed (default 42)
  --ingest-concurrency <c>    concurrent POST /v1/memories while seeding (default 8)
  --pool-max <n>              DATABASE_POOL_MAX for postgres (default: server default)
  --keep                      keep the database / data dir afterwards (for --reuse)
  --reuse <dir>               load a store kept by --keep (this bench or bench:search); one backend
  --reuse-database <name>     with --reuse on postgres: the kept engram_bench_… database
  --markdown                  also print the table as Markdown
  --out <dir>                 where to write the JSON (default bench/results)

Processes: the server runs in this process (as bench:search), the load
generator (autocannon) in a child process, and the embedder — an
OpenAI-compatible server answering with the builtin embedder's vectors —
in another (EMBEDDER=openai). Phase "steady" runs the mix over HTTP with the
embedder up; phase "in-process" makes the same calls (same mix, seed, mode,
limit, write payloads; one async caller per connection, closed loop) on the
server's services in this process, with no HTTP, authentication or JSON —
the floor "steady" is compared with (HTTP ok req/s as % of it); phase
"embedder-kill" runs the HTTP mix again and SIGKILLs the embedder half-way
through. Phases never overlap. Rate limiting is off (RATE_LIMIT_ENABLED=false).
Everything is on 127.0.0.1.

Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), VALKEY_URL (optional,
postgres backend only). Both must point at 127.0.0.1.
`;

const ratio = (name: string, v: string | undefined, def: number): number => {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0 || x > 1) throw new Error(`--${name} must be between 0 and 1 (got ${v})`);
  return x;
};

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...STORE_OPTIONS,
      n: { type: 'string' },
      connections: { type: 'string' },
      duration: { type: 'string' },
      'write-ratio': { type: 'string' },
      phases: { type: 'string' },
      warmup: { type: 'string' },
      mode: { type: 'string' },
      limit: { type: 'string' },
      timeout: { type: 'string' },
    },
    strict: true,
  });
  const phases = list(values.phases, PHASES.join(','));
  for (const p of phases) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase ${p}`);
  const mode = values.mode ?? 'hybrid';
  if (!(MODES as readonly string[]).includes(mode)) throw new Error(`unknown mode ${mode}`);
  return {
    ...storeOptions(values),
    n: positiveInt('n', values.n, 100_000),
    connections: positiveInt('connections', values.connections, 50),
    durationSeconds: positiveInt('duration', values.duration, 60),
    writeRatio: ratio('write-ratio', values['write-ratio'], 0.2),
    phases: PHASES.filter((p) => phases.includes(p)),
    warmupSeconds: values.warmup === '0' ? 0 : positiveInt('warmup', values.warmup, 5),
    mode: mode as LoadSpec['mode'],
    limit: positiveInt('limit', values.limit, 10),
    timeoutSeconds: positiveInt('timeout', values.timeout, 10),
  };
}
type Options = ReturnType<typeof parseOptions>;

type Kind = 'all' | 'search' | 'write';
type Part = 'whole' | 'before kill' | 'after kill';

/** One row of the result: answers of one kind within one window of a phase. */
interface Slice {
  readonly part: Part;
  readonly kind: Kind;
  readonly seconds: number;
  /** Answers received (any status). */
  readonly answers: number;
  /** 2xx answers. */
  readonly ok: number;
  /** 2xx answers per second of the window. */
  readonly okPerSec: number;
  /** Latency of 2xx answers: autocannon's per-response timing, in-process the call's duration. */
  readonly latencyMs: LatencySummary;
  readonly statuses: Record<string, number>;
  /** Requests with no answer (timeouts, socket errors): counted in `all` rows only. */
  readonly failures: number;
  /** (non-2xx answers + failures) / (answers + failures), percent. */
  readonly errorPct: number;
  /** Search answers (200) that listed a degraded signal. */
  readonly degraded: number;
  readonly degradedPct: number;
}

interface PhaseResult {
  readonly phase: Phase;
  /** `http`: through the load generator; `in-process`: the services called directly. */
  readonly transport: 'http' | 'in-process';
  readonly durationSeconds: number;
  readonly slices: Slice[];
  /** Seconds from the start of the phase to the SIGKILL of the embedder. */
  readonly killedAfterSeconds?: number;
  /** Milliseconds from the kill to the first degraded search answer. */
  readonly firstDegradedAfterKillMs?: number;
  readonly breakerAtEnd: string;
  /** Memories without a vector of the current model after the phase (to be re-embedded). */
  readonly memoriesWithoutVector: number;
  readonly embeddingCache: { readonly hits: number; readonly misses: number };
  /** The server's database pool, sampled every 250 ms during the phase (PGlite: its one session, not sampled). */
  readonly pool: PoolSummary;
  /** CPU time of this process (server + orchestration) during the phase, in % of one core. */
  readonly serverCpuPct: number;
  readonly loadAverage: { readonly before: number[]; readonly after: number[] };
  /** Requests without an answer by error; in-process also the calls that threw, by error code. */
  readonly failuresByError: Record<string, number>;
  /** HTTP phases: autocannon's own summary. */
  readonly autocannon?: LoadReport['autocannon'];
  /** The in-process phase: callers, and calls still running when the window closed (not counted). */
  readonly inProcess?: { readonly workers: number; readonly inFlightAtEnd: number; readonly drainMs: number };
}

/** One kind's HTTP steady figures beside the in-process floor's. */
interface FloorComparison {
  readonly kind: Kind;
  readonly httpOkPerSec: number;
  readonly inProcessOkPerSec: number;
  /** HTTP ok req/s as a percentage of in-process ok calls/s. */
  readonly httpPctOfInProcess: number;
  readonly httpLatencyMs: LatencySummary;
  readonly inProcessLatencyMs: LatencySummary;
}

interface BackendResult {
  readonly backend: BackendName;
  readonly n?: number;
  readonly reused?: { readonly dataDir: string; readonly database?: string | undefined };
  readonly info: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly ingest?: IngestResult;
  readonly databaseBytes?: number;
  readonly phases: PhaseResult[];
  /** Phase steady beside phase in-process, when both ran. */
  readonly floor?: {
    /** HTTP's share of the floor's throughput (all requests) that counts as fast enough. */
    readonly targetPct: number;
    /** The `all` row's httpPctOfInProcess ≥ targetPct. */
    readonly met: boolean;
    /** all, search, write. */
    readonly kinds: FloorComparison[];
  };
  readonly error?: string;
}

const now = (): number => performance.timeOrigin + performance.now();
const pct = (part: number, whole: number): number => (whole === 0 ? 0 : round((100 * part) / whole, 3));

function slice(r: LoadRun, part: Part, kind: Kind, from: number, to: number, seconds = (to - from) / 1000): Slice {
  const s: LoadSamples = r.samples;
  const want = kind === 'all' ? undefined : kind === 'write' ? KIND_WRITE : KIND_SEARCH;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let answers = 0;
  let ok = 0;
  let okSearches = 0;
  let degraded = 0;
  for (let i = 0; i < s.at.length; i++) {
    const at = s.at[i] ?? 0;
    if (at < from || at >= to || (want !== undefined && s.kind[i] !== want)) continue;
    const status = s.status[i] ?? 0;
    answers += 1;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status < 200 || status > 299) continue;
    ok += 1;
    latencies.push(s.ms[i] ?? 0);
    if (s.kind[i] === KIND_SEARCH) {
      okSearches += 1;
      degraded += s.degraded[i] ?? 0;
    }
  }
  const failures = kind === 'all' ? r.failures.filter((f) => f.at >= from && f.at < to).length : 0;
  return {
    part,
    kind,
    seconds: round(seconds),
    answers,
    ok,
    okPerSec: round(ok / seconds),
    latencyMs: roundSummary(summarize(latencies)),
    statuses,
    failures,
    errorPct: pct(answers - ok + failures, answers + failures),
    degraded,
    degradedPct: pct(degraded, okSearches),
  };
}

async function embeddingCacheCounts(b: Backend): Promise<{ hits: number; misses: number }> {
  const { values } = await b.server.engram.metrics.cacheRequests.get();
  const count = (result: string) =>
    values.filter((v) => v.labels.cache === 'embedding' && v.labels.result === result).reduce((a, v) => a + v.value, 0);
  return { hits: count('hit'), misses: count('miss') };
}

interface PoolSummary {
  readonly size: number;
  readonly meanInUse: number;
  readonly meanWaiting: number;
  readonly maxWaiting: number;
}

/** Samples the server's pool (connections in use, queries waiting for one) until stopped. */
function samplePool(b: Backend): { stop(): PoolSummary } {
  const stats = () => b.server.engram.database.poolStats();
  let n = 0;
  let inUse = 0;
  let waiting = 0;
  let maxWaiting = 0;
  const timer = setInterval(() => {
    const s = stats();
    n += 1;
    inUse += s.total - s.idle;
    waiting += s.waiting;
    maxWaiting = Math.max(maxWaiting, s.waiting);
  }, 250);
  return {
    stop: () => {
      clearInterval(timer);
      return {
        size: stats().total,
        meanInUse: round(n === 0 ? 0 : inUse / n, 1),
        meanWaiting: round(n === 0 ? 0 : waiting / n, 1),
        maxWaiting,
      };
    },
  };
}

/** The next message of `type` from the load client, or an error if it exits first. */
function nextMessage<T extends ClientMessage['type']>(
  c: Child<ClientMessage>,
  type: T,
): Promise<Extract<ClientMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ClientMessage) => {
      if (m.type !== type) return;
      c.process.off('message', onMessage);
      resolve(m as Extract<ClientMessage, { type: T }>);
    };
    c.process.on('message', onMessage);
    void c.exited.then((how) => {
      c.process.off('message', onMessage);
      reject(new Error(`the load generator exited (${how}) before '${type}'`));
    });
  });
}

/** The processes a run starts; Ctrl-C ends them with the server. */
const children = new Set<Child<unknown>>();
let active: Backend | undefined;

/**
 * One closed-loop run of the load generator; `kill`, if given, is called
 * half-way through and returns when the embedder is gone.
 */
async function runLoad(
  spec: LoadSpec,
  kill?: () => Promise<number>,
): Promise<{ report: LoadReport; killedAt?: number }> {
  const client = await forkChild<ClientMessage>(LOAD_CLIENT, []);
  children.add(client);
  // The load generator ends itself after the duration; this bounds a hung one.
  const watchdog = setTimeout(
    () => {
      log('load generator overran its duration; killing it');
      client.kill('SIGKILL');
    },
    (spec.durationSeconds + spec.timeoutSeconds + 30) * 1000,
  );
  let killTimer: NodeJS.Timeout | undefined;
  try {
    const started = nextMessage(client, 'started');
    const done = nextMessage(client, 'done');
    client.process.send(spec);
    const { at } = await started;
    let killed: Promise<number> | undefined;
    if (kill !== undefined) {
      killTimer = setTimeout(
        () => {
          killed = kill();
        },
        Math.max(0, at + (spec.durationSeconds * 1000) / 2 - now()),
      );
    }
    const { report } = await done;
    await client.exited;
    const killedAt = killed === undefined ? undefined : await killed;
    return killedAt === undefined ? { report } : { report, killedAt };
  } finally {
    clearTimeout(watchdog);
    clearTimeout(killTimer);
    client.kill('SIGKILL');
    children.delete(client);
  }
}

/**
 * runLoad, then wait until the server has finished every request: autocannon
 * stops at the deadline with requests still in the server, which must not run
 * into the next phase (above all the in-process one, whose callers share this
 * process). Bounded by the request timeout.
 */
async function runHttp(
  handlers: HandlerTracker,
  spec: LoadSpec,
  kill?: () => Promise<number>,
): Promise<{ report: LoadReport; killedAt?: number }> {
  const r = await runLoad(spec, kill);
  const left = handlers.inFlight;
  if (!(await handlers.idle(250, spec.timeoutSeconds * 1000))) {
    log(
      `the server still runs ${handlers.inFlight} requests ${spec.timeoutSeconds} s after the load stopped; going on`,
    );
  } else if (left > 0) {
    log(`waited for the ${left} requests the server was still running when the load stopped`);
  }
  return r;
}

async function startFakeEmbedder(dimension: number): Promise<Child<{ baseUrl: string }>> {
  const fake = await forkChild<{ baseUrl: string }>(FAKE_EMBEDDER, [String(dimension)]);
  children.add(fake);
  return fake;
}

async function benchBackend(name: BackendName, opts: Options): Promise<BackendResult> {
  // The builtin embedder's model name and dimension: the fake answers with its
  // vectors, so a store seeded by bench:search (builtin) can be reused and
  // its vectors count as the current model's.
  const { model, dimension } = loadConfig({}).embedding;
  const fake = await startFakeEmbedder(dimension);
  log(`${name}: embedder (OpenAI-compatible, builtin vectors) at ${fake.ready.baseUrl}, pid ${fake.process.pid}`);
  log(`${name}: starting server`);
  const b = await startBackend(name, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: name === 'postgres' ? process.env.VALKEY_URL : undefined,
    env: {
      EMBEDDER: 'openai',
      EMBEDDING_MODEL: model,
      EMBEDDING_DIMENSION: String(dimension),
      OPENAI_BASE_URL: fake.ready.baseUrl,
      RATE_LIMIT_ENABLED: 'false',
      // Retried embedding jobs warn once per memory while the embedder is gone; errors still show.
      LOG_LEVEL: 'error',
      ...(opts.poolMax === undefined ? {} : { DATABASE_POOL_MAX: String(opts.poolMax) }),
    },
    reuse: opts.reuse,
  });
  active = b;
  const phases: PhaseResult[] = [];
  const handlers = trackHandlers();
  try {
    log(`${name}: listening on ${b.url}${b.database === undefined ? '' : `, database ${b.database}`}`);
    const { n, ingest } = await prepareStore(b, {
      n: opts.n,
      seed: opts.seed,
      concurrency: opts.ingestConcurrency,
      analyze: true,
    });
    const size = await databaseBytes(b);
    // Writes use corpus memories past anything seeded or written by an earlier
    // run on a kept store (a random block of 10M indices), so each is new.
    let base = opts.n + 10_000_000 * (1 + Math.floor(Math.random() * 400));
    const spec = (durationSeconds: number): LoadSpec => {
      const s: LoadSpec = {
        url: b.url,
        apiKey: b.apiKey,
        connections: opts.connections,
        durationSeconds,
        writeRatio: opts.writeRatio,
        seed: opts.seed,
        writeBase: base,
        queryBase: base,
        mode: opts.mode,
        limit: opts.limit,
        timeoutSeconds: opts.timeoutSeconds,
      };
      base += 1_000_000;
      return s;
    };
    if (opts.warmupSeconds > 0) {
      log(`${name}: ${opts.warmupSeconds} s warm-up`);
      await runHttp(handlers, spec(opts.warmupSeconds));
    }
    for (const phase of opts.phases) {
      const how =
        phase === 'embedder-kill'
          ? ', embedder killed half-way'
          : phase === 'in-process'
            ? `, ${opts.connections} callers on the services, no HTTP`
            : '';
      log(`${name}: phase ${phase}, ${opts.durationSeconds} s${how}`);
      const cacheBefore = await embeddingCacheCounts(b);
      const loadBefore = os.loadavg().map((x) => round(x));
      const cpuBefore = process.cpuUsage();
      const pool = samplePool(b);
      const kill =
        phase === 'embedder-kill'
          ? async () => {
              fake.kill('SIGKILL');
              const at = now();
              await fake.exited;
              log(`${name}: embedder (pid ${fake.process.pid}) killed`);
              return at;
            }
          : undefined;
      let report: LoadRun;
      let killedAt: number | undefined;
      let transport: Pick<PhaseResult, 'transport' | 'autocannon' | 'inProcess'>;
      const failuresByError: Record<string, number> = {};
      if (phase === 'in-process') {
        // The context every HTTP request of the load generator resolves to (its API key's org and key).
        const ctx = await b.server.engram.apiKeys.authenticate(b.apiKey, 'bench-in-process');
        const floor: InProcessReport = await runInProcess(b.server.engram, ctx, {
          ...spec(opts.durationSeconds),
          workers: opts.connections,
        });
        report = floor;
        transport = {
          transport: 'in-process',
          inProcess: { workers: opts.connections, inFlightAtEnd: floor.inFlightAtEnd, drainMs: round(floor.drainMs) },
        };
        Object.assign(failuresByError, floor.errorsByCode);
      } else {
        const http = await runHttp(handlers, spec(opts.durationSeconds), kill);
        report = http.report;
        killedAt = http.killedAt;
        transport = { transport: 'http', autocannon: http.report.autocannon };
      }
      const cpu = process.cpuUsage(cpuBefore);
      const poolSummary = pool.stop();
      const wallS = (report.finishedAt - report.startedAt) / 1000;
      const { startedAt: t0, finishedAt: t1 } = report;
      const slices =
        killedAt === undefined
          ? (['all', 'search', 'write'] as const).map((k) => slice(report, 'whole', k, t0, t1))
          : [
              slice(report, 'before kill', 'search', t0, killedAt),
              slice(report, 'before kill', 'write', t0, killedAt),
              slice(report, 'after kill', 'search', killedAt, t1),
              slice(report, 'after kill', 'write', killedAt, t1),
              slice(report, 'whole', 'all', t0, t1),
            ];
      let firstDegraded: number | undefined;
      if (killedAt !== undefined) {
        const s = report.samples;
        for (let i = 0; i < s.at.length; i++) {
          const at = s.at[i] ?? 0;
          if (at >= killedAt && s.degraded[i] === 1 && (firstDegraded === undefined || at < firstDegraded)) {
            firstDegraded = at;
          }
        }
      }
      const cacheAfter = await embeddingCacheCounts(b);
      for (const f of report.failures) failuresByError[f.error] = (failuresByError[f.error] ?? 0) + 1;
      const result: PhaseResult = {
        phase,
        transport: transport.transport,
        durationSeconds: round(wallS),
        slices,
        ...(killedAt === undefined ? {} : { killedAfterSeconds: round((killedAt - t0) / 1000) }),
        ...(firstDegraded === undefined || killedAt === undefined
          ? {}
          : { firstDegradedAfterKillMs: round(firstDegraded - killedAt) }),
        breakerAtEnd: b.server.engram.embedder.breakerState,
        memoriesWithoutVector: await memoriesWithoutVector(b),
        embeddingCache: { hits: cacheAfter.hits - cacheBefore.hits, misses: cacheAfter.misses - cacheBefore.misses },
        serverCpuPct: round((100 * (cpu.user + cpu.system)) / 1000 / (wallS * 1000), 1),
        pool: poolSummary,
        loadAverage: { before: loadBefore, after: os.loadavg().map((x) => round(x)) },
        failuresByError,
        ...(transport.autocannon === undefined ? {} : { autocannon: transport.autocannon }),
        ...(transport.inProcess === undefined ? {} : { inProcess: transport.inProcess }),
      };
      phases.push(result);
      for (const x of slices) {
        log(
          `${name} ${phase} ${x.part} ${x.kind}: ${fmt(x.okPerSec)} ok/s, p50 ${fmt(x.latencyMs.p50)} ` +
            `p95 ${fmt(x.latencyMs.p95)} p99 ${fmt(x.latencyMs.p99)} ms, errors ${fmt(x.errorPct, 2)} %, ` +
            `degraded ${fmt(x.degradedPct, 1)} %, statuses ${JSON.stringify(x.statuses)}`,
        );
      }
    }
    return {
      backend: name,
      n,
      ...(b.reused ? { reused: { dataDir: b.dataDir, database: b.database } } : {}),
      info: b.info,
      config: configSummary(b),
      ...(ingest === undefined ? {} : { ingest }),
      ...(size === undefined ? {} : { databaseBytes: size }),
      phases,
      ...floorOf(phases),
    };
  } finally {
    handlers.close();
    await b.close({ keep: opts.keep });
    active = undefined;
    fake.kill('SIGKILL');
    children.delete(fake);
  }
}

/** HTTP's share of the in-process floor's throughput that counts as fast enough (issue 15). */
const FLOOR_TARGET_PCT = 60;

/** Phase steady (HTTP) beside phase in-process, kind by kind, when both ran. */
function floorOf(phases: readonly PhaseResult[]): Pick<BackendResult, 'floor'> {
  const http = phases.find((p) => p.phase === 'steady');
  const floor = phases.find((p) => p.phase === 'in-process');
  if (http === undefined || floor === undefined) return {};
  const kinds = (['all', 'search', 'write'] as const).flatMap((kind): FloorComparison[] => {
    const h = http.slices.find((x) => x.kind === kind);
    const f = floor.slices.find((x) => x.kind === kind);
    if (h === undefined || f === undefined) return [];
    return [
      {
        kind,
        httpOkPerSec: h.okPerSec,
        inProcessOkPerSec: f.okPerSec,
        httpPctOfInProcess: round(pct(h.okPerSec, f.okPerSec), 1),
        httpLatencyMs: h.latencyMs,
        inProcessLatencyMs: f.latencyMs,
      },
    ];
  });
  const all = kinds.find((c) => c.kind === 'all');
  return {
    floor: {
      targetPct: FLOOR_TARGET_PCT,
      met: all !== undefined && all.httpPctOfInProcess >= FLOOR_TARGET_PCT,
      kinds,
    },
  };
}

function floorRowsOf(results: readonly BackendResult[]): string[][] {
  return results.flatMap((r) =>
    (r.floor?.kinds ?? []).map((c) => [
      r.backend,
      c.kind,
      `${fmt(c.httpPctOfInProcess, 1)} %`,
      fmt(c.httpOkPerSec),
      fmt(c.inProcessOkPerSec),
      fmt(c.httpLatencyMs.p50),
      fmt(c.inProcessLatencyMs.p50),
      fmt(c.httpLatencyMs.p95),
      fmt(c.inProcessLatencyMs.p95),
    ]),
  );
}

const PART_LABEL: Record<Part, string> = { whole: '', 'before kill': ' (before kill)', 'after kill': ' (after kill)' };

function rowsOf(results: readonly BackendResult[]): string[][] {
  return results.flatMap((r) =>
    r.phases.flatMap((p) =>
      p.slices.map((x) => [
        r.backend,
        `${p.phase}${PART_LABEL[x.part]}`,
        x.kind,
        fmt(x.okPerSec),
        fmt(x.latencyMs.p50),
        fmt(x.latencyMs.p95),
        fmt(x.latencyMs.p99),
        fmt(x.errorPct, 2),
        x.kind === 'write' ? '-' : fmt(x.degradedPct, 1),
      ]),
    ),
  );
}

function notes(results: readonly BackendResult[]): string[] {
  return results.flatMap((r) => {
    if (r.error !== undefined) return [`${r.backend}: failed: ${r.error}`];
    const lines: string[] = [];
    if (r.ingest !== undefined) {
      lines.push(
        `${r.backend}: seeded ${r.ingest.created} memories in ${fmt(r.ingest.wallMs / 1000, 0)} s ` +
          `(${fmt(r.ingest.perSecond, 0)}/s)`,
      );
    }
    const all = r.floor?.kinds.find((c) => c.kind === 'all');
    if (r.floor !== undefined && all !== undefined) {
      lines.push(
        `${r.backend}: through HTTP ${fmt(all.httpOkPerSec)} ok req/s = ${fmt(all.httpPctOfInProcess, 1)} % of the ` +
          `${fmt(all.inProcessOkPerSec)} ok calls/s made in-process at the same concurrency ` +
          `(target ≥ ${r.floor.targetPct} %: ${r.floor.met ? 'met' : 'not met'})`,
      );
    }
    for (const p of r.phases) {
      const kill =
        p.killedAfterSeconds === undefined
          ? ''
          : `embedder SIGKILLed at +${fmt(p.killedAfterSeconds)} s, first degraded search ` +
            `${p.firstDegradedAfterKillMs === undefined ? 'never' : `+${fmt(p.firstDegradedAfterKillMs, 0)} ms`} after it; `;
      const failed = Object.entries(p.failuresByError)
        .map(([e, c]) => `${c} ${e}`)
        .join(', ');
      const unanswered =
        p.inProcess === undefined
          ? `no answer: ${failed === '' ? 'none' : failed}; `
          : `calls that threw or timed out: ${failed === '' ? 'none' : failed}; ` +
            `${p.inProcess.inFlightAtEnd} in flight at the end (not counted, ${fmt(p.inProcess.drainMs, 0)} ms to finish); `;
      lines.push(
        `${r.backend} ${p.phase}: ${kill}breaker ${p.breakerAtEnd} at the end; ` +
          `${p.memoriesWithoutVector} memories without a vector; embedding cache ${p.embeddingCache.hits} hits / ` +
          `${p.embeddingCache.misses} misses; ${unanswered}` +
          (r.backend === 'postgres'
            ? `pool of ${p.pool.size}: ${fmt(p.pool.meanInUse)} in use, ${fmt(p.pool.meanWaiting)} waiting on average ` +
              `(max ${p.pool.maxWaiting}); `
            : '') +
          `server process CPU ${fmt(p.serverCpuPct, 0)} % of a core; load average ${p.loadAverage.before[0]} → ${p.loadAverage.after[0]}`,
      );
    }
    return lines;
  });
}

async function main(opts: Options, facts: BenchFacts): Promise<number> {
  const m = facts.machine;
  const loadSeconds = opts.warmupSeconds + opts.phases.length * (opts.durationSeconds + 1);
  const seedMinutes = opts.reuse === undefined ? opts.backends.map((b) => opts.n / SEED_PER_SECOND[b] / 60) : [0];
  log(
    `${opts.reuse === undefined ? `N=${opts.n}` : `reusing ${opts.reuse.dataDir}`}, backends=${opts.backends.join(',')}, ` +
      `${opts.connections} connections, ${Math.round(opts.writeRatio * 100)} % writes, ${opts.mode} search limit ${opts.limit}, ` +
      `phases ${opts.phases.join(',')}; ${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}, load average ${os.loadavg()[0]?.toFixed(2)}`,
  );
  log(
    `bounded: per backend ${loadSeconds} s of load (${opts.warmupSeconds} s warm-up + ${opts.phases.length} × ` +
      `${opts.durationSeconds} s)` +
      (opts.reuse === undefined
        ? `, after seeding ${opts.n} memories (≈ ${seedMinutes.map((x) => fmt(x, 0)).join(' + ')} min)`
        : '') +
      `; in all ≈ ${fmt((opts.backends.length * loadSeconds) / 60 + seedMinutes.reduce((a, x) => a + x, 0), 0)} min`,
  );
  log(
    'server in this process, load generator and embedder in child processes, all on 127.0.0.1; RATE_LIMIT_ENABLED=false' +
      (opts.phases.includes('in-process') ? '; phase in-process calls the services in this process' : ''),
  );

  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts),
    (name, error): BackendResult => ({ backend: name, info: {}, config: {}, phases: [], error }),
  );

  const header = ['backend', 'phase', 'kind', 'ok req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors %', 'degraded %'];
  const rows = rowsOf(results);
  const sizes = [...new Set(results.map((r) => r.n ?? opts.n))].join('/');
  const floorHeader = [
    'backend',
    'kind',
    'HTTP % of in-process',
    'HTTP ok req/s',
    'in-process ok/s',
    'HTTP p50 ms',
    'in-process p50 ms',
    'HTTP p95 ms',
    'in-process p95 ms',
  ];
  const floorRows = floorRowsOf(results);
  const floorTable =
    floorRows.length === 0
      ? ''
      : `HTTP (phase steady) beside the same calls made in-process (phase in-process), ` +
        `${opts.connections} concurrent callers each:\n\n${table(floorHeader, floorRows)}\n\n`;
  process.stdout.write(
    `\nLoad benchmark, N=${sizes}, ${opts.connections} connections, ${Math.round(opts.writeRatio * 100)} % writes, ` +
      `${opts.mode} search (limit ${opts.limit}), ${opts.durationSeconds} s per phase, rate limiting off\n\n` +
      `${table(header, rows)}\n\n${floorTable}${notes(results).join('\n')}\n`,
  );
  if (opts.markdown) {
    process.stdout.write(`\n${markdownTable(header, rows)}\n`);
    if (floorRows.length > 0) process.stdout.write(`\n${markdownTable(floorHeader, floorRows)}\n`);
  }

  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeResult(opts.out, 'load', facts, {
    options: { ...recorded, vocabularyWords: vocabularySize(), rateLimiting: false },
    results,
  });
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

// Ctrl-C still stops the server, drops the database and ends the child processes.
runBench({
  help: HELP,
  parse: parseOptions,
  main,
  cleanup: async () => {
    for (const c of children) c.kill('SIGKILL');
    await active?.close();
  },
});
