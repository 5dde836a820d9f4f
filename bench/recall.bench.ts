/**
 * Recall benchmark: retrieval quality of memory search on LoCoMo, the
 * figures memory search is tuned against.
 *
 *   npm run bench:recall -- [--backends pglite,postgres] [--modes default,lexical,vector,hybrid] [--conversations 26,30]
 *
 * Every turn of each conversation is stored through `POST /v1/memories` as
 * `"<speaker>: <text>"`, scoped to `locomo-<id>`, with its dia_id and session
 * in metadata and the session's date as validFrom. Once every memory has its
 * vector, each question of categories 1–4 with evidence is searched in its
 * conversation's scope (limit 10) in every mode, and scored with hit@1/5/10
 * and MRR@10 (bench/lib/locomo.ts), overall and per category. `default` sends
 * no `mode`: what a client gets without choosing.
 *
 * The data (CC BY-NC, not redistributed) is read from ../shared/data/locomo-dev
 * next to the repository unless --data says otherwise; without it the
 * benchmark says so and exits 0.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  BACKENDS,
  DEFAULT_DATABASE_URL,
  assertLoopback,
  configSummary,
  startBackend,
  type Backend,
  type BackendName,
} from './lib/backend.ts';
import {
  DEFAULT_RESULTS_DIR,
  errText,
  fmt,
  forEachBackend,
  list,
  log,
  positiveInt,
  runBench,
  writeResult,
  type BenchFacts,
} from './lib/cli.ts';
import { countMemories, memoriesWithoutVector } from './lib/ingest.ts';
import { postJson, progress, runPool } from './lib/load.ts';
import {
  CATEGORY_IDS,
  MAX_K,
  RETRIEVAL_CATEGORIES,
  firstEvidenceRank,
  loadLocomo,
  retrievalQuestions,
  scoreByCategory,
  scopeUser,
  turnMemories,
  unknownEvidence,
  type LocomoConversation,
  type RetrievalCategory,
  type RetrievalQuestion,
  type RetrievalScores,
  type TurnMemory,
} from './lib/locomo.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_DATA_DIR = path.resolve(REPO_ROOT, '../shared/data/locomo-dev');

/** `default` sends no `mode` field: the server picks. */
const MODES = ['default', 'lexical', 'vector', 'hybrid'] as const;
type Mode = (typeof MODES)[number];

const BATCH_SIZE = 500;
const WARMUP_PER_MODE = 10;
const EMBED_WAIT_MS = 10 * 60_000;

const HELP = `Usage: npm run bench:recall -- [options]

  --backends <list>          pglite,postgres (default both; an unreachable postgres is skipped)
  --modes <list>             ${MODES.join(',')} (default all; default = no mode field)
  --data <dir>               the LoCoMo conversations (default ${path.relative(process.cwd(), DEFAULT_DATA_DIR)})
  --conversations <list>     only these conversation ids, e.g. 26,30 (default all in --data)
  --ingest-concurrency <c>   conversations written side by side (default 8)
  --markdown                 also print the tables as Markdown
  --out <dir>                where to write the JSON (default bench/results)
  --help

Searches run one at a time (limit ${MAX_K}) after ${WARMUP_PER_MODE} unmeasured warm-up queries per
mode; each question goes through the modes in a rotating order, so the
embedding cache's misses fall on the vector-using modes alike.

Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), must point at 127.0.0.1.
`;

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      backends: { type: 'string' },
      modes: { type: 'string' },
      data: { type: 'string' },
      conversations: { type: 'string' },
      'ingest-concurrency': { type: 'string' },
      markdown: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  const backends = list(values.backends, BACKENDS.join(','));
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`unknown backend ${b}`);
  const modes = list(values.modes, MODES.join(','));
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
  return {
    help: values.help,
    backends: backends as BackendName[],
    modes: modes as Mode[],
    dataDir: values.data === undefined ? DEFAULT_DATA_DIR : path.resolve(values.data),
    conversations: values.conversations === undefined ? undefined : list(values.conversations, ''),
    ingestConcurrency: positiveInt('ingest-concurrency', values['ingest-concurrency'], 8),
    markdown: values.markdown,
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}
type Options = ReturnType<typeof parseOptions>;

interface IngestStats {
  /** `batch` when POST /v1/memories/batch answered, else one POST per memory. */
  readonly method: 'batch' | 'single';
  readonly memories: number;
  readonly created: number;
  readonly deduplicated: number;
  readonly errors: number;
  readonly wallMs: number;
  readonly perSecond: number;
  /** Per request (one memory, or one batch). */
  readonly latencyMs: LatencySummary;
  readonly firstError?: string;
}

interface ModeResult {
  readonly mode: Mode;
  /** The `mode` the server reported, counted over the measured searches. */
  readonly serverModes: Record<string, number>;
  readonly overall: RetrievalScores;
  readonly byCategory: Record<RetrievalCategory, RetrievalScores>;
  /** Successful searches only. */
  readonly latencyMs: LatencySummary;
  readonly errors: number;
  /** Answers with a degraded signal. */
  readonly degraded: number;
  /** Results outside the searched scope (must stay 0). */
  readonly foreignResults: number;
  readonly firstError?: string;
}

interface BackendResult {
  readonly backend: BackendName;
  readonly skipped?: string;
  readonly error?: string;
  readonly info?: Record<string, unknown>;
  readonly config?: Record<string, unknown>;
  readonly ingest?: IngestStats;
  /** From the end of ingestion until no memory lacked a vector. */
  readonly embedWaitMs?: number;
  readonly memories?: number;
  readonly analyzeMs?: number;
  readonly modes?: ModeResult[];
  /** First-evidence rank per question and mode (null: not in the top 10), to diff runs. */
  readonly ranks?: Array<{ conversation: string; qa: number; category: number; rank: Record<string, number | null> }>;
}

interface SearchAnswer {
  readonly results: Array<{ memory: { scope: { user?: string }; metadata: Record<string, unknown> } }>;
  readonly mode: string;
  readonly degraded: string[];
}

/**
 * Stores every turn: in chunks through POST /v1/memories/batch when the
 * server has it (probed with the first chunk; 404 means it does not), else
 * one POST /v1/memories each, conversations side by side (up to `concurrency`).
 */
async function ingest(b: Backend, memories: readonly TurnMemory[], concurrency: number): Promise<IngestStats> {
  const latencies: number[] = [];
  let created = 0;
  let deduplicated = 0;
  let errors = 0;
  let firstError: string | undefined;
  const fail = (what: string, status: number, body: string, count: number) => {
    errors += count;
    firstError ??= `${what}: HTTP ${status}: ${body.slice(0, 300)}`;
  };
  const t0 = performance.now();
  const report = (done: number) => {
    const rate = done / ((performance.now() - t0) / 1000);
    log(`${b.name} ingest ${done}/${memories.length} ${fmt(rate, 0)} memories/s`);
  };

  const chunks: TurnMemory[][] = [];
  for (let i = 0; i < memories.length; i += BATCH_SIZE) chunks.push(memories.slice(i, i + BATCH_SIZE));
  const probe = await postJson(`${b.url}/v1/memories/batch`, b.apiKey, { items: chunks[0] ?? [] });
  let method: IngestStats['method'] = 'single';
  if (probe.status !== 404 && (probe.status < 200 || probe.status >= 300)) {
    // Whatever it stored before failing is deduplicated by the single writes.
    log(`${b.name}: POST /v1/memories/batch answered HTTP ${probe.status}; one POST per memory instead`);
  } else if (probe.status !== 404) {
    method = 'batch';
    const tick = progress(chunks.length, 10, (done) => report(Math.min(memories.length, done * BATCH_SIZE)));
    const record = (r: { status: number; ms: number; body: string }, chunk: readonly TurnMemory[]) => {
      latencies.push(r.ms);
      if (r.status >= 200 && r.status < 300) {
        const body = JSON.parse(r.body) as { created: number; existing: number; failed: number };
        created += body.created;
        deduplicated += body.existing;
        if (body.failed > 0) fail('POST /v1/memories/batch', r.status, r.body, body.failed);
      } else fail('POST /v1/memories/batch', r.status, r.body, chunk.length);
      tick();
    };
    record(probe, chunks[0] ?? []);
    for (const chunk of chunks.slice(1)) {
      record(await postJson(`${b.url}/v1/memories/batch`, b.apiKey, { items: chunk }), chunk);
    }
  } else {
    const tick = progress(memories.length, 10, report);
    // A conversation is written in dialogue order, as a live chat would be
    // (neighbouring turns are found in write order); conversations run side by side.
    const byConversation = new Map<string, TurnMemory[]>();
    for (const m of memories) {
      const key = m.scope.user;
      byConversation.set(key, [...(byConversation.get(key) ?? []), m]);
    }
    const conversations = [...byConversation.values()];
    await runPool(conversations.length, concurrency, async (c) => {
      for (const m of conversations[c] ?? []) {
        const r = await postJson(`${b.url}/v1/memories`, b.apiKey, m);
        latencies.push(r.ms);
        if (r.status === 201) created += 1;
        else if (r.status === 200) deduplicated += 1;
        else fail('POST /v1/memories', r.status, r.body, 1);
        tick();
      }
    });
  }
  const wallMs = performance.now() - t0;
  const perSecond = memories.length / (wallMs / 1000);
  log(
    `${b.name} ingested ${memories.length} turns (${method}): ${created} created, ${deduplicated} duplicates, ` +
      `${errors} errors in ${fmt(wallMs / 1000)} s, ${fmt(perSecond, 0)} memories/s`,
  );
  if (firstError !== undefined) log(`${b.name} first ingest error: ${firstError}`);
  return {
    method,
    memories: memories.length,
    created,
    deduplicated,
    errors,
    wallMs: round(wallMs),
    perSecond: round(perSecond),
    latencyMs: roundSummary(summarize(latencies)),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/**
 * Waits until no memory lacks a vector. Writes embed inline; a write whose
 * embedding failed leaves an embed_memory job that the server's worker runs.
 */
async function waitForEmbeddings(b: Backend): Promise<number> {
  const t0 = performance.now();
  let last = -1;
  for (;;) {
    const missing = await memoriesWithoutVector(b);
    if (missing === 0) return performance.now() - t0;
    if (performance.now() - t0 > EMBED_WAIT_MS) {
      throw new Error(`${missing} memories still had no vector after ${EMBED_WAIT_MS / 1000} s`);
    }
    if (missing !== last) log(`${b.name}: waiting for ${missing} memories to be embedded`);
    last = missing;
    await new Promise((r) => setTimeout(r, 500));
  }
}

const searchBody = (query: string, mode: Mode, user: string) => ({
  query,
  ...(mode === 'default' ? {} : { mode }),
  limit: MAX_K,
  scope: { user },
});

/** What one mode's searches add up to while they run. */
interface ModeTally {
  readonly latencies: number[];
  /** First-evidence rank per question, in question order. */
  readonly ranks: Array<number | undefined>;
  readonly serverModes: Record<string, number>;
  errors: number;
  degraded: number;
  foreign: number;
  firstError?: string;
}

async function searchAll(b: Backend, questions: readonly RetrievalQuestion[], modes: readonly Mode[]) {
  const endpoint = `${b.url}/v1/memories/search`;
  const firstUser = questions[0] === undefined ? scopeUser('none') : scopeUser(questions[0].conversationId);
  for (const mode of modes) {
    for (let i = 0; i < WARMUP_PER_MODE; i++) {
      await postJson(endpoint, b.apiKey, searchBody(`warm-up query ${mode} ${i}`, mode, firstUser));
    }
  }
  const acc = new Map<Mode, ModeTally>(
    modes.map((m) => [m, { latencies: [], ranks: [], serverModes: {}, errors: 0, degraded: 0, foreign: 0 }]),
  );
  const tick = progress(questions.length, 10, (done) =>
    log(`${b.name} searched ${done}/${questions.length} questions`),
  );
  for (const [qi, q] of questions.entries()) {
    const user = scopeUser(q.conversationId);
    for (let j = 0; j < modes.length; j++) {
      const mode = modes[(qi + j) % modes.length] as Mode;
      const a = acc.get(mode);
      if (a === undefined) continue;
      const r = await postJson(endpoint, b.apiKey, searchBody(q.question, mode, user));
      if (r.status !== 200) {
        a.errors += 1;
        a.firstError ??= `HTTP ${r.status} for ${JSON.stringify(q.question)}: ${r.body.slice(0, 300)}`;
        a.ranks.push(undefined);
        continue;
      }
      a.latencies.push(r.ms);
      const body = JSON.parse(r.body) as SearchAnswer;
      a.serverModes[body.mode] = (a.serverModes[body.mode] ?? 0) + 1;
      if (body.degraded.length > 0) a.degraded += 1;
      a.foreign += body.results.filter((x) => x.memory.scope.user !== user).length;
      const ids = body.results.map((x) => {
        const id = x.memory.metadata.dia_id;
        return typeof id === 'string' ? id : undefined;
      });
      a.ranks.push(firstEvidenceRank(ids, q.evidence));
    }
    tick();
  }
  const modeResults = modes.map((mode): ModeResult => {
    const a = acc.get(mode);
    if (a === undefined) throw new Error(`no results for mode ${mode}`);
    const scores = scoreByCategory(questions.map((q, i) => ({ category: q.category, rank: a.ranks[i] })));
    if (a.firstError !== undefined) log(`${b.name} ${mode} first search error: ${a.firstError}`);
    return {
      mode,
      serverModes: a.serverModes,
      overall: roundScores(scores.overall),
      byCategory: {
        1: roundScores(scores.byCategory[1]),
        2: roundScores(scores.byCategory[2]),
        3: roundScores(scores.byCategory[3]),
        4: roundScores(scores.byCategory[4]),
      },
      latencyMs: roundSummary(summarize(a.latencies)),
      errors: a.errors,
      degraded: a.degraded,
      foreignResults: a.foreign,
      ...(a.firstError === undefined ? {} : { firstError: a.firstError }),
    };
  });
  const ranks = questions.map((q, i) => ({
    conversation: q.conversationId,
    qa: q.index,
    category: q.category,
    rank: Object.fromEntries(modes.map((m) => [m, acc.get(m)?.ranks[i] ?? null])),
  }));
  return { modeResults, ranks };
}

const roundScores = (s: RetrievalScores): RetrievalScores => ({
  n: s.n,
  hitAt1: round(s.hitAt1, 4),
  hitAt5: round(s.hitAt5, 4),
  hitAt10: round(s.hitAt10, 4),
  mrrAt10: round(s.mrrAt10, 4),
});

/** Why PostgreSQL cannot be used, or undefined when it answers. */
async function postgresUnavailable(url: string): Promise<string | undefined> {
  try {
    assertLoopback('DATABASE_URL', url);
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
    } finally {
      await c.end().catch(() => undefined);
    }
    return undefined;
  } catch (e) {
    const u = new URL(url);
    u.password = '';
    return `cannot reach ${u.toString()}: ${errText(e)}`;
  }
}

let active: Backend | undefined;

async function benchBackend(
  name: BackendName,
  opts: Options,
  conversations: readonly LocomoConversation[],
): Promise<BackendResult> {
  const databaseUrl = process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  if (name === 'postgres') {
    const why = await postgresUnavailable(databaseUrl);
    if (why !== undefined) {
      log(`skipped postgres: ${why}`);
      return { backend: name, skipped: why };
    }
  }
  log(`${name}: starting server`);
  const b = await startBackend(name, { databaseUrl, valkeyUrl: undefined, env: searchTuningEnv() });
  active = b;
  try {
    log(`${name}: listening on ${b.url}${b.database === undefined ? '' : `, database ${b.database}`}`);
    const memories = conversations.flatMap(turnMemories);
    const ing = await ingest(b, memories, opts.ingestConcurrency);
    if (ing.created + ing.deduplicated === 0) throw new Error(`nothing was ingested: ${ing.firstError ?? '?'}`);
    const embedWaitMs = await waitForEmbeddings(b);
    const n = await countMemories(b);
    // Stands in for autovacuum / the embedded store's background ANALYZE (off with REEMBED_INTERVAL_MS=0):
    // the plans a steady server would use, for vector search above all.
    const ta = performance.now();
    await b.server.engram.system.analyze(true);
    const analyzeMs = performance.now() - ta;
    log(`${name}: ${n} memories, all embedded after ${fmt(embedWaitMs, 0)} ms; ANALYZE ${fmt(analyzeMs, 0)} ms`);
    const questions = conversations.flatMap(retrievalQuestions);
    const { modeResults, ranks } = await searchAll(b, questions, opts.modes);
    for (const m of modeResults) {
      log(
        `${name} ${m.mode}: hit@10 ${fmt(m.overall.hitAt10, 3)} MRR@10 ${fmt(m.overall.mrrAt10, 3)}, ` +
          `p50 ${fmt(m.latencyMs.p50)} ms, ${m.errors} errors, server mode ${JSON.stringify(m.serverModes)}`,
      );
    }
    return {
      backend: name,
      info: b.info,
      config: configSummary(b),
      ingest: ing,
      embedWaitMs: round(embedWaitMs),
      memories: n,
      analyzeMs: round(analyzeMs),
      modes: modeResults,
      ranks,
    };
  } finally {
    await b.close();
    active = undefined;
  }
}

const ranAs = (m: ModeResult): string => Object.keys(m.serverModes).join('+') || '-';

async function main(opts: Options, facts: BenchFacts): Promise<number> {
  if (!existsSync(opts.dataDir)) {
    process.stderr.write(`skipped: LoCoMo data directory ${opts.dataDir} not found (see --data)\n`);
    return 0;
  }
  const conversations = loadLocomo(opts.dataDir, opts.conversations);
  const questions = conversations.flatMap(retrievalQuestions);
  const turns = conversations.reduce((n, c) => n + c.sessions.reduce((m, s) => m + s.turns.length, 0), 0);
  const dataIssues = conversations.flatMap((c) => {
    const unknown = unknownEvidence(c);
    return unknown.length === 0 ? [] : [{ conversation: c.id, unknownEvidence: unknown }];
  });
  for (const d of dataIssues) {
    log(`conversation ${d.conversation}: evidence naming no turn (never found): ${d.unknownEvidence.join(', ')}`);
  }
  const categoryCounts = Object.fromEntries(
    CATEGORY_IDS.map((c) => [RETRIEVAL_CATEGORIES[c], questions.filter((q) => q.category === c).length]),
  );
  const m = facts.machine;
  log(
    `LoCoMo ${conversations.map((c) => c.id).join(',')}: ${turns} turns, ${questions.length} questions ` +
      `${JSON.stringify(categoryCounts)}; backends=${opts.backends.join(',')} modes=${opts.modes.join(',')}; ` +
      `${m.cpus} CPUs, node ${m.node}`,
  );

  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts, conversations),
    (name, error): BackendResult => ({ backend: name, error }),
  );

  const measured = results.flatMap((r) => (r.modes ?? []).map((x) => ({ r, x })));
  const header = ['backend', 'mode', 'ran as', 'hit@1', 'hit@5', 'hit@10', 'MRR@10', 'p50 ms', 'p95 ms', 'n', 'errors'];
  const rows = measured.map(({ r, x }) => [
    r.backend,
    x.mode,
    ranAs(x),
    fmt(x.overall.hitAt1, 3),
    fmt(x.overall.hitAt5, 3),
    fmt(x.overall.hitAt10, 3),
    fmt(x.overall.mrrAt10, 3),
    fmt(x.latencyMs.p50),
    fmt(x.latencyMs.p95),
    String(x.overall.n),
    String(x.errors),
  ]);
  const catHeader = [
    'backend',
    'mode',
    'ran as',
    ...CATEGORY_IDS.flatMap((c) => [`${RETRIEVAL_CATEGORIES[c]} @5`, `@10`]),
  ];
  const catRows = measured.map(({ r, x }) => [
    r.backend,
    x.mode,
    ranAs(x),
    ...CATEGORY_IDS.flatMap((c) => [fmt(x.byCategory[c].hitAt5, 3), fmt(x.byCategory[c].hitAt10, 3)]),
  ]);
  const ingestLines = results.map((r) =>
    r.ingest !== undefined
      ? `${r.backend}: ingested ${r.ingest.memories} turns in ${fmt(r.ingest.wallMs / 1000)} s ` +
        `(${fmt(r.ingest.perSecond, 0)}/s, ${r.ingest.method === 'batch' ? `batches of ${BATCH_SIZE}` : `concurrency ${opts.ingestConcurrency}`}), ` +
        `embedded after ${fmt((r.embedWaitMs ?? 0) / 1000)} s more`
      : `${r.backend}: ${r.skipped === undefined ? `failed: ${r.error ?? '?'}` : `skipped: ${r.skipped}`}`,
  );
  const cats = CATEGORY_IDS.map((c) => `${RETRIEVAL_CATEGORIES[c]} ${categoryCounts[RETRIEVAL_CATEGORIES[c]]}`).join(
    ', ',
  );
  process.stdout.write(
    `\nRecall benchmark, LoCoMo ${conversations.map((c) => c.id).join(',')}: ${turns} turns, ` +
      `${questions.length} questions (${cats}), limit ${MAX_K}\n${ingestLines.join('\n')}\n\n` +
      `${table(header, rows)}\n\nhit@5 / hit@10 per category\n\n${table(catHeader, catRows)}\n`,
  );
  if (opts.markdown) {
    process.stdout.write(`\n${markdownTable(header, rows)}\n\n${markdownTable(catHeader, catRows)}\n`);
  }

  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeResult(opts.out, 'recall', facts, {
    options: { ...recorded, limit: MAX_K, warmupPerMode: WARMUP_PER_MODE, batchSize: BATCH_SIZE },
    dataset: {
      conversations: conversations.map((c) => ({
        id: c.id,
        sessions: c.sessions.length,
        turns: c.sessions.reduce((n, s) => n + s.turns.length, 0),
        questions: retrievalQuestions(c).length,
      })),
      turns,
      questions: questions.length,
      categories: categoryCounts,
      dataIssues,
    },
    results,
  });
  return results.some((r) => r.error !== undefined || (r.modes ?? []).some((x) => x.errors > 0)) ? 1 : 0;
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

/** SEARCH_* settings of this process (e.g. SEARCH_VECTOR_WEIGHT) go to the servers, so a run can compare tunings. */
function searchTuningEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('SEARCH_') && e[1] !== undefined),
  );
}
