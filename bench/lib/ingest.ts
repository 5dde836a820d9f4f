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
  /** Concurrent POST /v1/memories. */
  readonly concurrency: number;
  /** Refresh planner statistics while ingesting (see {@link ingest}). */
  readonly analyze: boolean;
}

export interface IngestResult {
  readonly n: number;
  readonly created: number;
  readonly deduplicated: number;
  readonly errors: number;
  readonly wallMs: number;
  readonly perSecond: number;
  readonly latencyMs: LatencySummary;
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
  const { wallMs } = await runPool(opts.n, opts.concurrency, async (i) => {
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
 * Seeds a fresh store with `n` memories (a reused one is left as it is), then
 * refreshes planner statistics once more; returns the memory count and, for a
 * fresh store, the ingestion result.
 */
export async function prepareStore(
  b: Backend,
  opts: IngestOptions,
): Promise<{ readonly n: number; readonly ingest?: IngestResult }> {
  let ing: IngestResult | undefined;
  if (!b.reused) {
    ing = await ingest(b, opts);
    if (ing.created === 0) throw new Error(`nothing was ingested: ${ing.firstError ?? 'unknown error'}`);
  }
  const n = await countMemories(b);
  if (b.reused)
    log(`${b.name}: reusing ${b.dataDir}${b.database === undefined ? '' : ` / ${b.database}`}: ${n} memories`);
  if (opts.analyze) {
    const t = performance.now();
    await b.server.engram.system.analyze(true);
    log(`${b.name}: ANALYZE took ${fmt(performance.now() - t, 0)} ms`);
  }
  return ing === undefined ? { n } : { n, ingest: ing };
}
