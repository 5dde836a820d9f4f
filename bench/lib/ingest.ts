import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Backend } from './backend.ts';
import { errText, fmt, log } from './cli.ts';
import { memoryAt } from './corpus.ts';
import { postJson, progress, runPool } from './load.ts';
import { round, roundSummary, summarize, type LatencySummary } from './stats.ts';

/** Filling a benchmark store with the corpus through the REST API, and facts about the store. */

export interface IngestOptions {
  /** Memories to write: corpus items 0..n-1. */
  readonly n: number;
  readonly seed: number;
  /** Concurrent requests: POST /v1/memories, or batches with `path: 'batch'`. */
  readonly concurrency: number;
  /** Refresh planner statistics while ingesting (see {@link ingest}). */
  readonly analyze: boolean;
  /** Spread the corpus over this many users (see memoryAt); default: the corpus's own 25 people. */
  readonly users?: number | undefined;
  /**
   * `single` (default): one POST /v1/memories per memory, embedded inline.
   * `batch`: POST /v1/memories/batch of {@link BATCH_SIZE}, embedded by background jobs.
   */
  readonly path?: IngestPath | undefined;
  /**
   * Before the final statistics refresh, wait until every memory has a vector
   * (see {@link waitForVectors}); seconds, default: do not wait.
   */
  readonly waitForVectorsS?: number | undefined;
}

export type IngestPath = 'single' | 'batch';

/** Items per POST /v1/memories/batch: the endpoint's maximum. */
export const BATCH_SIZE = 1000;

export interface IngestResult {
  readonly path: IngestPath;
  readonly n: number;
  readonly created: number;
  readonly deduplicated: number;
  readonly errors: number;
  readonly wallMs: number;
  readonly perSecond: number;
  /** Per request: one memory, or one batch. */
  readonly latencyMs: LatencySummary;
  /** Batch requests sent (batch path). */
  readonly batches?: number;
  /** From the end of ingestion until every memory had a vector, when waited for. */
  readonly vectorsCompleteMs?: number;
  /** ANALYZEs run during ingestion. */
  readonly analyzeRuns: number;
  readonly firstError?: string;
}

/**
 * Writes corpus memories 0..n-1 through `POST /v1/memories`, printing progress
 * every 5 %. With `analyze`, refreshes planner statistics through the
 * server's SystemStore.analyze() as the table grows — a stand-in for
 * autovacuum (off on the embedded store and on some servers): without fresh
 * statistics the per-insert plans go bad as the table grows
 * (docs/benchmarks.md). analyze() only acts past 50 rows + 10 %.
 */
export async function ingest(b: Backend, opts: IngestOptions): Promise<IngestResult> {
  const endpoint = `${b.url}/v1/memories`;
  const latencies: number[] = [];
  let created = 0;
  let deduplicated = 0;
  let errors = 0;
  let firstError: string | undefined;
  const analyzeEvery = Math.max(200, Math.floor(opts.n / 100));
  const analyzer = backgroundAnalyze(b, opts.analyze);
  let sinceCheck = 0;
  const maybeAnalyze = () => {
    if (analyzer.busy() || ++sinceCheck < analyzeEvery) return;
    sinceCheck = 0;
    analyzer.start();
  };
  const t0 = performance.now();
  const tick = progress(opts.n, 5, (done) => logProgress(b, done, opts.n, t0));
  const { wallMs } = await runPool(opts.n, opts.concurrency, async (i) => {
    const m = memoryAt(opts.seed, i, opts.users);
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
  await analyzer.settled();
  const perSecond = opts.n / (wallMs / 1000);
  log(
    `${b.name} ingested ${created} memories (${deduplicated} duplicates, ${errors} errors) ` +
      `in ${fmt(wallMs / 1000)} s: ${fmt(perSecond, 0)} memories/s`,
  );
  if (firstError !== undefined) log(`${b.name} first ingest error: ${firstError}`);
  return {
    path: 'single',
    n: opts.n,
    created,
    deduplicated,
    errors,
    wallMs: round(wallMs),
    perSecond: round(perSecond),
    latencyMs: roundSummary(summarize(latencies)),
    analyzeRuns: analyzer.runs(),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** The ingest progress line: done, share, rate and time left. */
function logProgress(b: Backend, done: number, n: number, t0: number): void {
  const rate = done / ((performance.now() - t0) / 1000);
  log(
    `${b.name} ingest ${done}/${n} (${Math.round((done / n) * 100)}%) ` +
      `${fmt(rate, 0)} memories/s, eta ${fmt((n - done) / rate, 0)} s`,
  );
}

/**
 * Planner statistics refreshed in the background while ingesting, one
 * ANALYZE at a time, as autovacuum would (off when `enabled` is false).
 */
function backgroundAnalyze(b: Backend, enabled: boolean) {
  let running: Promise<void> | undefined;
  let runs = 0;
  return {
    busy: () => !enabled || running !== undefined,
    start: () => {
      if (!enabled || running !== undefined) return;
      running = b.server.engram.system
        .analyze()
        .then((ran) => {
          if (ran) runs += 1;
        })
        .catch((e: unknown) => log(`${b.name} ANALYZE during ingestion failed: ${errText(e)}`))
        .finally(() => {
          running = undefined;
        });
    },
    settled: async () => running,
    runs: () => runs,
  };
}

/**
 * Writes corpus memories 0..n-1 through `POST /v1/memories/batch`,
 * {@link BATCH_SIZE} per request, `concurrency` requests in flight, printing
 * progress about every 5 %. The server stores each batch in one transaction
 * and embeds it in background jobs (see {@link waitForVectors}). With
 * `analyze`, refreshes planner statistics between batches, in the background
 * as autovacuum would (analyze() only acts past 50 rows + 10 %).
 */
export async function ingestBatches(b: Backend, opts: IngestOptions): Promise<IngestResult> {
  const endpoint = `${b.url}/v1/memories/batch`;
  const batches = Math.ceil(opts.n / BATCH_SIZE);
  const latencies: number[] = [];
  let created = 0;
  let existing = 0;
  let errors = 0;
  let done = 0;
  let firstError: string | undefined;
  const analyzer = backgroundAnalyze(b, opts.analyze);
  const t0 = performance.now();
  const every = Math.max(1, Math.floor(batches / 20));
  const { wallMs } = await runPool(batches, opts.concurrency, async (k) => {
    const from = k * BATCH_SIZE;
    const items = Array.from({ length: Math.min(BATCH_SIZE, opts.n - from) }, (_, j) =>
      memoryAt(opts.seed, from + j, opts.users),
    );
    const r = await postJson(endpoint, b.apiKey, { items });
    latencies.push(r.ms);
    done += items.length;
    if (r.status !== 200) {
      errors += items.length;
      firstError ??= `HTTP ${r.status}: ${r.body.slice(0, 300)}`;
    } else {
      const body = JSON.parse(r.body) as {
        created: number;
        existing: number;
        failed: number;
        results: Array<{ status: string; error?: { message: string } }>;
      };
      created += body.created;
      existing += body.existing;
      errors += body.failed;
      if (body.failed > 0) firstError ??= `item error: ${body.results.find((x) => x.error)?.error?.message ?? '?'}`;
    }
    if ((k + 1) % every === 0 || done === opts.n) logProgress(b, done, opts.n, t0);
    analyzer.start();
  });
  await analyzer.settled();
  const perSecond = opts.n / (wallMs / 1000);
  log(
    `${b.name} ingested ${created} memories (${existing} duplicates, ${errors} errors) in ${batches} batches ` +
      `in ${fmt(wallMs / 1000)} s: ${fmt(perSecond, 0)} memories/s`,
  );
  if (firstError !== undefined) log(`${b.name} first ingest error: ${firstError}`);
  return {
    path: 'batch',
    n: opts.n,
    created,
    deduplicated: existing,
    errors,
    wallMs: round(wallMs),
    perSecond: round(perSecond),
    latencyMs: roundSummary(summarize(latencies)),
    batches,
    analyzeRuns: analyzer.runs(),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/**
 * Waits until no memory lacks a vector from the server's model (the batch
 * path embeds in background jobs), logging progress every 10 s; returns the
 * milliseconds waited, or throws after `timeoutS`: vector and hybrid numbers
 * over a half-embedded store would measure a different store.
 */
export async function waitForVectors(b: Backend, timeoutS: number): Promise<number> {
  const t0 = performance.now();
  let lastLog = t0;
  for (;;) {
    const missing = await memoriesWithoutVector(b);
    if (missing === 0) return performance.now() - t0;
    const s = (performance.now() - t0) / 1000;
    if (s > timeoutS) throw new Error(`${missing} memories still had no vector after ${fmt(s, 0)} s`);
    if (performance.now() - lastLog >= 10_000 || lastLog === t0) {
      lastLog = performance.now();
      log(`${b.name}: waiting for vectors, ${missing} memories without one after ${fmt(s, 0)} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

export async function countMemories(b: Backend): Promise<number> {
  const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM memories`.execute(b.server.engram.database.adminDb);
  return r.rows[0]?.n ?? 0;
}

/** Memories with no vector from the server's current embedding model (to wait for the embed_memory jobs). */
export async function memoriesWithoutVector(b: Backend): Promise<number> {
  const model = b.server.engram.embedder.model;
  const r = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM memories m
    WHERE NOT EXISTS (SELECT 1 FROM memory_embeddings e
                      WHERE e.org_id = m.org_id AND e.memory_id = m.id AND e.model = ${model})`.execute(
    b.server.engram.database.adminDb,
  );
  return r.rows[0]?.n ?? 0;
}

/** pg_database_size of the store, or undefined where the store cannot say. */
export async function databaseBytes(b: Backend): Promise<number | undefined> {
  try {
    const r = await sql<{ n: string }>`SELECT pg_database_size(current_database())::text AS n`.execute(
      b.server.engram.database.adminDb,
    );
    return Number(r.rows[0]?.n);
  } catch {
    return undefined;
  }
}

/**
 * Seeds a fresh store with `n` memories (a reused one is left as it is),
 * waits for their vectors if asked to, then refreshes planner statistics once
 * more (after the vectors, so memory_embeddings is counted full); returns the memory count and, for a
 * fresh store, the ingestion result.
 */
export async function prepareStore(
  b: Backend,
  opts: IngestOptions,
): Promise<{ readonly n: number; readonly ingest?: IngestResult }> {
  let ing: IngestResult | undefined;
  if (!b.reused) {
    ing = await (opts.path === 'batch' ? ingestBatches(b, opts) : ingest(b, opts));
    if (ing.created === 0) throw new Error(`nothing was ingested: ${ing.firstError ?? 'unknown error'}`);
  }
  const n = await countMemories(b);
  if (b.reused)
    log(`${b.name}: reusing ${b.dataDir}${b.database === undefined ? '' : ` / ${b.database}`}: ${n} memories`);
  if (opts.waitForVectorsS !== undefined) {
    const ms = await waitForVectors(b, opts.waitForVectorsS);
    log(`${b.name}: every memory has a vector (waited ${fmt(ms / 1000)} s)`);
    if (ing !== undefined) ing = { ...ing, vectorsCompleteMs: round(ms) };
  }
  if (opts.analyze) {
    const t = performance.now();
    await b.server.engram.system.analyze(true);
    log(`${b.name}: ANALYZE took ${fmt(performance.now() - t, 0)} ms`);
    // The maintenance loop's VACUUM (autovacuum's insert threshold), which
    // keeps index-only scans of the memory postings off the heap.
    const v = performance.now();
    const vacuumed = await b.server.engram.system.vacuum();
    log(`${b.name}: VACUUM of ${vacuumed.join(', ') || 'nothing'} took ${fmt(performance.now() - v, 0)} ms`);
  }
  return ing === undefined ? { n } : { n, ingest: ing };
}
