import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { sql } from 'kysely';
import { buildApp, type AppDeps } from './app.ts';
import { Authenticator } from './auth/authenticator.ts';
import { DpopVerifier } from './auth/dpop.ts';
import { AuthFailureLimiter } from './auth/failure-limiter.ts';
import { JwtVerifier } from './auth/jwt-verifier.ts';
import { AuditService } from './domain/audit/audit.service.ts';
import { GraphService } from './domain/graph/graph.service.ts';
import { OrgService } from './domain/tenancy/org.service.ts';
import { QuotaService } from './domain/tenancy/quota.service.ts';
import { RateGate } from './domain/tenancy/rate-gate.ts';
import { redactedSummary, type Config } from './config/config.ts';
import { MemoryService } from './domain/memory/memory.service.ts';
import { ReembedService } from './domain/memory/reembed.service.ts';
import { embedMemoriesHandler, embedMemoryHandler } from './domain/jobs/embed-memory.handler.ts';
import { JobService } from './domain/jobs/job.service.ts';
import { EMBED_MEMORIES, EMBED_MEMORY } from './domain/jobs/job.types.ts';
import { CodeIndexer } from './domain/code/code-indexer.ts';
import { CodeGraphService } from './domain/code/code-graph.service.ts';
import { CodeQueryService } from './domain/code/code-query.service.ts';
import { CodeChunkIndexer } from './domain/code/code-chunk-indexer.ts';
import { CodeSearchService } from './domain/code/code-search.service.ts';
import { INDEX_CODE_CHUNKS } from './domain/code/code-search.types.ts';
import { INDEX_REPO } from './domain/code/code.types.ts';
import { RepoService } from './domain/code/repo.service.ts';
import { createCodeAnalysis } from './code/code-analysis.ts';
import { LocalRepoWorkspace } from './code/local-workspace.ts';
import { createParserPool } from './code/parser-pool.ts';
import { createTreeSitterParser } from './code/tree-sitter-parser.ts';
import { ImportWindow } from './domain/jobs/import-window.ts';
import { JobWorker } from './domain/jobs/job.worker.ts';
import { SearchService, defaultSearchWeights } from './domain/search/search.service.ts';
import { ApiKeyService } from './domain/tenancy/api-key.service.ts';
import { createEmbedder } from './embed/create-embedder.ts';
import { HttpReranker } from './rerank/http.reranker.ts';
import { ResilientReranker } from './rerank/resilient-reranker.ts';
import { ResilientEmbedder } from './embed/resilient-embedder.ts';
import type { RequestContext } from './domain/tenancy/tenancy.types.ts';
import { createMcpServer, type McpLog, type McpOrigin } from './mcp/server.ts';
import { codeTools } from './mcp/tools/code.tools.ts';
import { graphTools } from './mcp/tools/graph.tools.ts';
import { codeSearchTools } from './mcp/tools/code-search.tools.ts';
import { memoryTools } from './mcp/tools/memory.tools.ts';
import { DependencyHealth, embedderProbe, Health, pingProbe, type DependencyProbe } from './ops/health.ts';
import { Metrics } from './ops/metrics.ts';
import { waitForDependency, type DependencyPolicy } from './ops/resilience.ts';
import { AppError } from './errors.ts';
import { startTracing, traceFields, type Tracing } from './ops/tracing.ts';
import type { Cache } from './ports/cache.ts';
import type { RateLimiter } from './ports/rate-limiter.ts';
import { DataDirLock } from './storage/local/data-dir-lock.ts';
import { LocalCache } from './storage/local/local-cache.ts';
import { LocalReplayCaches } from './storage/local/local-replay-caches.ts';
import { LocalRateLimiter } from './storage/local/local-rate-limiter.ts';
import { openDatabase, storePolicy, type Database } from './storage/postgres/database.ts';
import { Migrator, migrationLabel } from './storage/postgres/migrator.ts';
import { QueryTracingPlugin } from './storage/postgres/query-tracing.ts';
import { PgSystemStore, PgTenantDb } from './storage/postgres/tenant-db.pg.ts';
import { PgJobQueue } from './storage/postgres/job-queue.pg.ts';
import type { JobQueue } from './ports/job-queue.ts';
import { ValkeyCache } from './storage/valkey/valkey-cache.ts';
import { valkeyPolicy } from './storage/valkey/valkey-policy.ts';
import { traceCache, traceRateLimiter } from './storage/valkey/valkey-tracing.ts';
import { ValkeyRateLimiter } from './storage/valkey/valkey-rate-limiter.ts';

/**
 * The composition root: the only place that knows every concrete adapter.
 * `openEngram` wires the store, cache, embedder and services (used by the
 * server and by CLI commands that run without a server); `startServer` adds
 * HTTP, the background re-embedder and graceful shutdown.
 */
export interface Engram {
  readonly config: Config;
  readonly database: Database;
  readonly migrator: Migrator;
  readonly system: PgSystemStore;
  readonly cache: Cache;
  readonly embedder: ResilientEmbedder;
  /** The optional reranker of hybrid search (RERANKER=http). */
  readonly reranker: ResilientReranker | undefined;
  readonly memories: MemoryService;
  readonly graph: GraphService;
  readonly search: SearchService;
  readonly apiKeys: ApiKeyService;
  readonly orgs: OrgService;
  readonly audit: AuditService;
  readonly authenticator: Authenticator;
  /** Failed authentication per client address; undefined when AUTH_FAILURES_PER_MIN=0. */
  readonly authFailures: AuthFailureLimiter | undefined;
  readonly reembed: ReembedService;
  /** An org's background jobs (list, retry). */
  readonly jobs: JobService;
  /** The org's repository registry (register, list, re-index, remove). */
  readonly repos: RepoService;
  /** Symbols, definitions and references of the org's indexed code. */
  readonly code: CodeQueryService;
  /** Dependencies, dependents, impact, source and repo maps of the org's indexed code. */
  readonly codeGraph: CodeGraphService;
  /** Code search over the org's chunks (lexical, vector, graph expansion). */
  readonly codeSearch: CodeSearchService;
  /** The durable job queue, across orgs (workers' side). */
  readonly jobQueue: JobQueue;
  /** This process's job worker; `startServer` starts it, tests drive it with `runOnce`/`drain`. */
  readonly worker: JobWorker;
  /** Token buckets: in Valkey when configured (limits hold across replicas), else in-process. */
  readonly rateLimiter: RateLimiter;
  /** Per-org rate-limit quotas (defaults from config, overrides in `org_quotas`). */
  readonly quotas: QuotaService;
  /** Prometheus series for this instance (its own registry). */
  readonly metrics: Metrics;
  /** OpenTelemetry traces (OTLP when configured; else off). */
  readonly tracing: Tracing;
  /** Held while the embedded store is open; undefined on PostgreSQL. */
  readonly lock: DataDirLock | undefined;
  /** Valkey's circuit (shared by cache and rate limiter); undefined without VALKEY_URL. The store's is `database.breaker`. */
  readonly valkeyPolicy: DependencyPolicy | undefined;
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly log: Logger;
  /** Apply pending migrations (default true). */
  readonly migrate?: boolean;
  /** Tracing owned by the caller; omitted: started from `config.tracing` and shut down by `close()`. */
  readonly tracing?: Tracing;
}

/** The driver's error under our AppError wrapping, and its code (errno or SQLSTATE). */
function rootCause(e: unknown): { code: string; message: string } {
  let root = e;
  while (root instanceof AppError && root.cause !== undefined) root = root.cause;
  const code = typeof root === 'object' && root !== null && 'code' in root ? String(root.code) : '';
  return { code, message: root instanceof Error ? root.message : String(root) };
}

/** The root cause, short: an errno code (ECONNREFUSED) or the server's message. */
function reasonOf(e: unknown): string {
  const { code, message } = rootCause(e);
  return /^E[A-Z]+$/.test(code) || message === '' ? code : message;
}

/**
 * Opens the store. PostgreSQL may still be starting (compose, Kubernetes): wait
 * for it with jittered exponential backoff up to STARTUP_TIMEOUT_MS, logging
 * each attempt, then give up with one line naming what to check. The probe
 * uses a pool of its own, outside the store's circuit breaker, so each log
 * line shows the real cause rather than "circuit open".
 */
async function openWithRetry(config: Config, log: Logger, policy: DependencyPolicy | undefined): Promise<Database> {
  const onConnectionError = (e: Error) =>
    log.warn({ err: e.message }, 'a PostgreSQL connection was lost; the pool reconnects on demand');
  if (config.store.kind === 'postgres') {
    const url = new URL(config.store.url);
    const where = `${url.hostname}:${url.port === '' ? '5432' : url.port}`;
    // Without session roles: before the first migration they do not exist yet.
    const probe = await openDatabase(config.store, { sessionRoles: false });
    try {
      await waitForDependency(() => probe.ping(), {
        timeoutMs: config.resilience.startupTimeoutMs,
        // A wrong password or role will not fix itself by waiting.
        isFatal: (e) => /^28/.test(rootCause(e).code),
        onRetry: ({ attempt, delayMs, error }) =>
          log.warn(
            { attempt, nextInMs: delayMs, err: reasonOf(error) },
            `waiting for PostgreSQL at ${where} (attempt ${attempt}, next in ${delayMs} ms): ${reasonOf(error)}`,
          ),
      });
    } catch (e) {
      throw new AppError(
        'UNAVAILABLE',
        `PostgreSQL at ${where} is not available (${reasonOf(e)}) after ${Math.round(config.resilience.startupTimeoutMs / 1000)} s: ` +
          'check that it is running and reachable and that DATABASE_URL is right (STARTUP_TIMEOUT_MS sets the wait)',
        { cause: e },
      );
    } finally {
      await probe.close().catch(() => undefined);
    }
  }
  const db = await openDatabase(config.store, { policy, onConnectionError });
  try {
    // The owner's pool, which migrates next; the app and system pools start as roles the first
    // migration creates, and are checked after it (checkSessionRoles).
    await sql`select 1`.execute(db.adminDb);
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e;
  }
  return db;
}

export async function openEngram(config: Config, opts: OpenOptions): Promise<Engram> {
  const { log } = opts;
  mkdirSync(config.dataDir, { recursive: true });
  const lock = config.store.kind === 'pglite' ? DataDirLock.acquire(config.dataDir) : undefined;
  const closers: Array<() => Promise<void>> = [];
  try {
    const tracing = opts.tracing ?? startTracing({ ...config.tracing, serviceVersion: VERSION });
    // Pushed first, so it runs last: the spans of the other closers still get out.
    if (opts.tracing === undefined) closers.push(() => tracing.shutdown());
    const tracer = tracing.enabled ? tracing.tracer : undefined;
    const database = await openWithRetry(
      config,
      log,
      config.store.kind === 'postgres' ? storePolicy(config.resilience.store) : undefined,
    );
    closers.push(() => database.close());
    const migrator = new Migrator(database.adminDb, database.kind, undefined, {
      'engram.region': config.residency.region,
    });
    if (opts.migrate !== false) {
      const runs = await migrator.up();
      for (const r of runs) log.info({ migration: migrationLabel(r) }, 'migration applied');
    }

    // One circuit for Valkey, shared by the cache and the rate limiter.
    const valkeyBreaker = config.valkeyUrl === undefined ? undefined : valkeyPolicy(config.resilience.valkey);
    let cache: Cache;
    if (config.valkeyUrl === undefined) {
      cache = new LocalCache();
    } else {
      const valkey = new ValkeyCache(config.valkeyUrl, {
        keyPrefix: config.valkeyKeyPrefix,
        commandTimeoutMs: config.resilience.valkey.timeoutMs,
        policy: valkeyBreaker,
      });
      await valkey.connect().catch((e: unknown) => {
        log.warn({ err: (e as Error).message }, 'Valkey not reachable; caching will resume when it is');
      });
      cache = tracer === undefined ? valkey : traceCache(valkey, tracer);
    }
    closers.push(() => cache.close());

    let rateLimiter: RateLimiter;
    if (config.valkeyUrl === undefined) {
      rateLimiter = new LocalRateLimiter();
    } else {
      // While Valkey is away, limits hold per replica (in-process buckets) instead of not at all.
      let lastFallbackLog = 0;
      const valkeyLimiter = new ValkeyRateLimiter(config.valkeyUrl, {
        keyPrefix: config.valkeyKeyPrefix,
        policy: valkeyBreaker,
        fallback: new LocalRateLimiter(),
        onFallback: (err) => {
          metrics.rateLimitFallbacks.inc();
          if (Date.now() - lastFallbackLog < 30_000) return;
          lastFallbackLog = Date.now();
          log.warn({ err: reasonOf(err) }, 'Valkey unavailable; rate limits are per replica until it is back');
        },
      });
      await valkeyLimiter.connect().catch((e: unknown) => {
        log.warn({ err: (e as Error).message }, 'Valkey not reachable; rate limits hold per replica until it is');
      });
      rateLimiter = tracer === undefined ? valkeyLimiter : traceRateLimiter(valkeyLimiter, tracer);
    }
    closers.push(() => rateLimiter.close());

    const metrics = new Metrics();
    metrics.watch({ pool: () => database.poolStats() });
    if (database.breaker !== undefined) metrics.watchDependency('store', database.breaker);
    if (valkeyBreaker !== undefined) metrics.watchDependency('valkey', valkeyBreaker);
    for (const b of [database.breaker, valkeyBreaker]) {
      b?.onTransition((to, from) => {
        const fields = { dependency: b.name, from, to };
        if (to === 'open') log.warn(fields, `${b.name} circuit opened: failing fast`);
        else log.info(fields, `${b.name} circuit ${to}`);
      });
    }
    const provider = await createEmbedder(config.embedding, path.join(config.dataDir, 'models'));
    const embedder = new ResilientEmbedder(provider, cache, {
      timeoutMs: config.embedding.timeoutMs,
      retries: config.embedding.retries,
      breakerThreshold: config.embedding.breakerThreshold,
      halfOpenAfterMs: config.embedding.breakerHalfOpenMs,
      observer: metrics.embedderObserver(),
      tracer,
    });
    closers.push(() => embedder.close());
    metrics.watch({ breaker: { provider: embedder.provider, state: () => embedder.breakerState } });
    metrics.watchDependency('embedder', {
      get state() {
        return embedder.breakerState;
      },
      onTransition: (listener) => embedder.onBreakerTransition(listener),
    });

    // Spans per statement for the stores the app queries with (migrations and jobs stay untraced).
    const queryTracing = tracer === undefined ? undefined : new QueryTracingPlugin(tracer);
    const traceDb = (db: Database['db']) => (queryTracing === undefined ? db : db.withPlugin(queryTracing));
    const appDb = traceDb(database.db);
    const systemDb = database.systemDb === database.db ? appDb : traceDb(database.systemDb);
    const adminDb = database.adminDb === database.db ? appDb : traceDb(database.adminDb);
    const system = new PgSystemStore(appDb, systemDb, adminDb);
    if (await migrator.isCurrent()) {
      await database.checkSessionRoles();
      await system.registerEmbeddingModel({
        name: embedder.model,
        provider: embedder.provider,
        dimension: embedder.dimension,
      });
    }
    const canActAsSystem = await system.canActAsSystem().catch(() => false);
    if (!canActAsSystem) {
      log.warn(
        'the database user is not a member of engram_system: full-text search cannot use its GIN index under RLS (see docs/deployment.md)',
      );
    }
    const tenantDb = new PgTenantDb(appDb, { canActAsSystem });
    const onEmbedError = (e: unknown) =>
      log.warn({ err: (e as Error).message }, 'embedding failed; vector signal degraded');
    // The embedded store is one session: embedding waits while an import streams in (see ImportWindow).
    const imports = new ImportWindow({ enabled: database.kind === 'pglite' });
    const memories = new MemoryService({
      tenantDb,
      embedder,
      limits: config.limits,
      onEmbedError,
      embedJobMaxAttempts: config.jobs.maxAttempts,
      // Bulk writes defer their vectors to jobs: start on them now, not at the next poll.
      onQueued: () => worker.poke(),
      bulkWrites: imports,
    });
    const graph = new GraphService({
      tenantDb,
      embedder,
      system,
      onEmbedError,
      onMaintenanceError: (e) => log.warn({ err: (e as Error).message }, 'refreshing graph statistics failed'),
    });
    // Before the store closes: lets a background embedding run finish.
    closers.push(() => graph.close());
    const weights = defaultSearchWeights(embedder.provider);
    const rr = config.search.reranker;
    const reranker =
      rr === undefined
        ? undefined
        : new ResilientReranker(
            new HttpReranker({
              baseUrl: rr.baseUrl,
              api: rr.api,
              model: rr.model,
              apiKey: rr.apiKey,
              timeoutMs: rr.timeoutMs,
            }),
            rr,
          );
    const search = new SearchService({
      tenantDb,
      system,
      embedder,
      limits: config.limits,
      options: {
        weights: {
          ...weights,
          vector: config.search.vectorWeight ?? weights.vector,
          context: config.search.contextWeight,
          graph: config.search.graphWeight,
        },
        neighbourWindowSeconds: config.search.neighbourWindowSeconds,
        rerankCandidates: config.search.rerankCandidates,
      },
      reranker,
      onEmbedError,
    });
    const apiKeys = new ApiKeyService({ tenantDb, system });
    const orgs = new OrgService({ system, residency: config.residency });
    const audit = new AuditService({
      tenantDb,
      system,
      onRecordFailure: () => metrics.auditAppendFailures.inc(),
      refusalWindowMs: config.auth.refusalAuditWindowSeconds * 1000,
    });
    // Runs before the store closes: the refusals summed so far are written.
    closers.push(() => audit.close());
    let lastFailureLimitLog = 0;
    const authFailures =
      config.auth.failuresPerMinute === 0
        ? undefined
        : new AuthFailureLimiter({
            limiter: rateLimiter,
            perMinute: config.auth.failuresPerMinute,
            onError: (err) => {
              if (Date.now() - lastFailureLimitLog < 30_000) return;
              lastFailureLimitLog = Date.now();
              log.warn({ err: reasonOf(err) }, 'failed-authentication limit unavailable; not counting (fail open)');
            },
          });
    const authenticator = new Authenticator({
      apiKeys,
      orgs,
      jwt: config.auth.jwt === undefined ? undefined : new JwtVerifier(config.auth.jwt),
      dpop: new DpopVerifier({
        iatWindowSeconds: config.auth.dpop.iatWindowSeconds,
        // Valkey makes replay detection hold across replicas; in-process, one
        // cache per org keeps embedding entries and other orgs' proofs from
        // evicting seen jtis, sized for what the proof budget lets live at once.
        replayCache:
          config.valkeyUrl === undefined
            ? new LocalReplayCaches({
                perPartition: Math.ceil(
                  (config.auth.dpop.proofsPerMinute / 60) * (2 * config.auth.dpop.iatWindowSeconds + 5) * 1.2,
                ),
                maxPartitions: 10_000,
                ttlMs: (2 * config.auth.dpop.iatWindowSeconds + 5) * 1000,
              })
            : cache,
        admit: async (partition) => {
          const bucket = {
            capacity: config.auth.dpop.proofsPerMinute,
            refillPerSecond: config.auth.dpop.proofsPerMinute / 60,
          };
          const d = await rateLimiter.take(`dpop:${partition}`, bucket).catch(() => undefined);
          if (d !== undefined && !d.allowed) {
            throw new AppError('RATE_LIMITED', `Too many DPoP proofs for this org; retry in ${d.retryAfterSeconds} s`, {
              details: { class: 'dpop', retryAfterSeconds: d.retryAfterSeconds },
            });
          }
        },
        nonce: config.auth.dpop.nonce
          ? {
              secret:
                config.auth.dpop.nonceSecret === undefined
                  ? randomBytes(32)
                  : new TextEncoder().encode(config.auth.dpop.nonceSecret),
            }
          : undefined,
      }),
      requireDpop: config.auth.dpop.required,
    });
    const reembed = new ReembedService({ tenantDb, system, embedder });
    const jobQueue = new PgJobQueue(database.systemDb);
    const jobs = new JobService({ tenantDb });
    const workspace = new LocalRepoWorkspace({
      dataDir: config.dataDir,
      ...config.code,
      orgSlug: async (orgId) => (await system.findOrgById(orgId))?.slug,
    });
    const parser = await createTreeSitterParser();
    const parserPool =
      config.code.parseThreads > 0
        ? createParserPool(config.code.parseThreads, { maxHeapMb: config.code.parseWorkerMaxMb })
        : undefined;
    if (parserPool !== undefined) closers.push(() => parserPool.close());
    const repos = new RepoService({
      tenantDb,
      workspace,
      system,
      jobMaxAttempts: config.jobs.maxAttempts,
      maxReposPerOrg: config.code.maxReposPerOrg,
      // A run queued here starts at once rather than at the worker's next poll.
      onQueued: () => worker.poke(),
    });
    const code = new CodeQueryService({ tenantDb });
    const codeGraph = new CodeGraphService({ tenantDb, workspace });
    const codeSearch = new CodeSearchService({ tenantDb, embedder, limits: config.limits, onEmbedError });
    // PostgreSQL's autovacuum reclaims what index and chunk runs replace; the embedded store has none.
    const vacuum = database.kind === 'pglite' ? system : undefined;
    const chunker = new CodeChunkIndexer({
      tenantDb,
      workspace,
      embedder,
      jobMaxAttempts: config.jobs.maxAttempts,
      onEmbedError,
      statistics: system,
      vacuum,
    });
    const indexer = new CodeIndexer({
      tenantDb,
      parser,
      parserPool,
      workspace,
      analysis: createCodeAnalysis({ maxFileBytes: config.code.maxFileBytes }),
      precise: { enabled: config.code.precise, maxFiles: config.code.preciseMaxFiles },
      maxRepoBytes: config.code.maxRepoBytes,
      maxOrgBytes: config.code.maxOrgBytes,
      statistics: system,
      vacuum,
    });
    const worker = new JobWorker({
      queue: jobQueue,
      handlers: new Map([
        [EMBED_MEMORY, embedMemoryHandler({ tenantDb, embedder })],
        [EMBED_MEMORIES, embedMemoriesHandler({ tenantDb, embedder })],
        // A successful index run queues the (re)chunking of what changed for code search.
        [INDEX_REPO, chunker.afterIndexing(indexer.handler())],
        [INDEX_CODE_CHUNKS, chunker.handler()],
      ]),
      workerId: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      concurrency: config.jobs.concurrency,
      maxRunningPerOrg: config.jobs.maxRunningPerOrg,
      pollMs: config.jobs.pollMs,
      leaseMs: config.jobs.leaseMs,
      backoff: { baseMs: config.jobs.backoffBaseMs, maxMs: config.jobs.backoffMaxMs },
      retentionMs: config.jobs.retentionMs,
      // While the embedder's circuit is open, embed jobs wait instead of spending attempts.
      isPaused: (kind) =>
        ((kind === EMBED_MEMORY || kind === EMBED_MEMORIES) && !embedder.acceptsCalls) ||
        (kind === EMBED_MEMORIES && imports.active()),
      onOutcome: (job, outcome, err) => {
        metrics.jobsProcessed.inc({ kind: job.kind, result: outcome });
        const fields = { jobId: job.id, orgId: job.orgId, kind: job.kind, attempt: job.attempts };
        if (outcome === 'dead') log.error({ ...fields, err }, 'job failed its last attempt; it is dead');
        else if (outcome === 'retried') log.warn({ ...fields, err: (err as Error).message }, 'job failed; will retry');
        else if (outcome === 'lost') log.warn(fields, 'job finished after its lease was lost');
      },
      onError: (e) => log.warn({ err: (e as Error).message }, 'job queue unavailable; will retry'),
    });
    // Stops claiming (and waits for nothing) if the server never started it.
    closers.push(async () => {
      await worker.stop(0);
    });
    metrics.watch({ jobs: { kinds: worker.kinds, stats: () => jobQueue.stats() } });
    const quotas = new QuotaService({
      system,
      defaults: config.rateLimit.perMinute,
      burstSeconds: config.rateLimit.burstSeconds,
    });
    return {
      config,
      database,
      migrator,
      system,
      cache,
      embedder,
      reranker,
      memories,
      graph,
      search,
      apiKeys,
      orgs,
      audit,
      authenticator,
      authFailures,
      reembed,
      jobs,
      repos,
      code,
      codeGraph,
      codeSearch,
      jobQueue,
      worker,
      rateLimiter,
      quotas,
      metrics,
      tracing,
      lock,
      valkeyPolicy: valkeyBreaker,
      close: async () => {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        lock?.release();
      },
    };
  } catch (e) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    lock?.release();
    throw e;
  }
}

/** The server's pino logger: JSON lines to stdout (or `destination`), secrets redacted, trace ids mixed in. */
export function createLogger(config: Config, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.dpop',
        'req.headers.cookie',
        '*.apiKey',
        '*.secret',
        '*.password',
        '*.token',
        '*.authorization',
        '*.headers.authorization',
        '*.headers.dpop',
        '*.headers.cookie',
        '*.headers["x-api-key"]',
        // Defence in depth: memory content and search text are never logged on purpose.
        '*.content',
        '*.query',
      ],
      censor: '***',
    },
    // Lines logged while a span is active carry its ids, joining logs to traces.
    mixin: traceFields,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * First start of a store: creates the org "default" and an admin API key,
 * saved in `<dataDir>/admin.key` (mode 0600), which `engram mcp` and the CLI
 * read. Returns the key when it created one; undefined when the org exists.
 * Callers say where the key is (the server prints it once on its console).
 */
export async function bootstrapDefaultOrg(engram: Engram): Promise<{ adminKey: string; keyFile: string } | undefined> {
  const boot = await engram.apiKeys.bootstrap(engram.config.residency.region);
  if (boot.adminKey === undefined) return undefined;
  const keyFile = path.join(engram.config.dataDir, 'admin.key');
  writeFileSync(keyFile, `${boot.adminKey}\n`, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  return { adminKey: boot.adminKey, keyFile };
}

export interface RunningServer {
  readonly url: string;
  readonly engram: Engram;
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Print the bootstrap admin key created on first start (default true).
   * Whatever collects stdout (journald, a container log driver, CI) keeps it.
   */
  readonly printKey?: boolean;
}

export async function startServer(
  config: Config,
  log: Logger = createLogger(config),
  opts: StartOptions = {},
): Promise<RunningServer> {
  log.info({ config: redactedSummary(config) }, 'starting Engram');
  const engram = await openEngram(config, { log });
  const { database, migrator } = engram;

  const boot = await bootstrapDefaultOrg(engram);
  if (boot !== undefined && opts.printKey === false) {
    process.stdout.write(
      `\n  Engram created the org "default" and an admin API key, saved in ${boot.keyFile} (mode 0600).\n\n`,
    );
  } else if (boot !== undefined) {
    process.stdout.write(
      `\n  Engram created the org "default" and an admin API key (shown once):\n\n    ${boot.adminKey}\n\n` +
        `  It is also saved in ${boot.keyFile} (mode 0600).\n\n`,
    );
  }

  let migrationsCurrent = await migrator.isCurrent();
  const health = new Health([
    { name: 'store', check: () => database.ping() },
    {
      name: 'migrations',
      check: async () => {
        if (!migrationsCurrent) migrationsCurrent = await migrator.isCurrent();
        if (!migrationsCurrent) throw new Error('migrations pending: run `engram migrate up`');
      },
    },
  ]);

  const app = await buildApp(appDeps(engram, health, log));
  const address = await app.listen({ host: config.host, port: config.port });
  const url =
    config.port === 0
      ? address
      : `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
  // The lock taken by openEngram now also tells CLI commands where we listen.
  engram.lock?.setUrl(url);
  log.info({ url }, `Engram listening on ${url}`);

  // Background work: fill in missing vectors; on the embedded store (no
  // autovacuum) also vacuum tables with many dead rows and refresh planner
  // statistics once enough rows changed.
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = engram.reembed
      .run()
      .then(async (r) => {
        if (r.embedded > 0) log.info({ embedded: r.embedded }, 're-embedded memories');
        if (r.error !== undefined) log.warn({ err: (r.error as Error).message }, 're-embed paused; will retry');
        const g = await engram.graph.embedStale();
        if (g.embedded > 0) log.info({ embedded: g.embedded }, 'embedded graph entities');
        if (g.error !== undefined) log.warn({ err: (g.error as Error).message }, 'graph embedding paused; will retry');
        if (database.kind === 'pglite') {
          const vacuumed = await engram.system.vacuum();
          if (vacuumed.length > 0) log.debug({ tables: vacuumed }, 'vacuumed tables');
          if (await engram.system.analyze()) log.debug('refreshed planner statistics');
        }
      })
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'background maintenance failed; will retry'))
      .finally(() => {
        if (timer !== undefined) timer = setTimeout(tick, config.reembedIntervalMs);
      });
  };
  if (config.reembedIntervalMs > 0) timer = setTimeout(tick, 1_000);
  // Durable jobs (embedding that failed at write time, …); the re-embed sweep
  // above stays for model changes and as a safety net.
  if (config.jobs.pollMs > 0 && config.jobs.concurrency > 0) engram.worker.start();

  let stopped = false;
  return {
    url,
    engram,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      // Readiness flips first, so a load balancer stops routing here while requests still succeed.
      health.markShuttingDown();
      clearTimeout(timer);
      timer = undefined;
      // Stop claiming now; running jobs get half the shutdown budget, then go back to the queue.
      const workerStopped = engram.worker.stop(Math.floor(config.shutdownTimeoutMs / 2));
      if (config.shutdownDelayMs > 0) {
        log.info({ delayMs: config.shutdownDelayMs }, 'not ready; serving on until load balancers notice');
        await new Promise((r) => setTimeout(r, config.shutdownDelayMs));
      }
      // Stop accepting; in-flight requests finish. Streams still open (SSE) are cut at the deadline.
      const cut = setTimeout(
        () => app.server.closeAllConnections(),
        Math.max(0, config.shutdownTimeoutMs - config.shutdownDelayMs - 1_000),
      );
      await app.close();
      clearTimeout(cut);
      await workerStopped.catch(() => undefined);
      await running.catch(() => undefined);
      await engram.close();
    },
  };
}

const VERSION = '0.1.0';

/** The MCP face: every tool, and a server factory per authenticated principal. */
export function mcpServerFactory(engram: Engram, log: McpLog): (ctx: RequestContext, origin: McpOrigin) => McpServer {
  const tools = [
    ...memoryTools({ memories: engram.memories, search: engram.search, maxLimit: engram.config.limits.searchLimit }),
    ...graphTools({ graph: engram.graph }),
    ...codeTools({ query: engram.code, graph: engram.codeGraph }),
    ...codeSearchTools({ codeSearch: engram.codeSearch, maxLimit: engram.config.limits.searchLimit }),
  ];
  // The org buckets of the REST routes: each tool call is charged to its class, batched or not.
  const rates = engram.config.rateLimit.enabled
    ? new RateGate({
        limiter: engram.rateLimiter,
        quotas: engram.quotas,
        onReject: (cls) => engram.metrics.rateLimitRejections.inc({ class: cls }),
      })
    : undefined;
  return (ctx, origin) =>
    createMcpServer(
      ctx,
      {
        tools,
        memories: engram.memories,
        audit: engram.audit,
        log,
        version: VERSION,
        tracer: tracerOf(engram),
        rates,
      },
      origin,
    );
}

const tracerOf = (engram: Engram) => (engram.tracing.enabled ? engram.tracing.tracer : undefined);

/** Store, Valkey (when configured) and embedder, for /health/deps. */
export function dependencyHealth(engram: Engram): DependencyHealth {
  const breaker = (p: DependencyPolicy | undefined) =>
    p === undefined ? undefined : () => ({ breaker: p.state, circuit: p.snapshot() });
  const probes: DependencyProbe[] = [
    pingProbe('store', () => engram.database.ping(), breaker(engram.database.breaker)),
  ];
  if (engram.cache.kind === 'valkey') {
    probes.push(pingProbe('valkey', () => engram.cache.ping(), breaker(engram.valkeyPolicy)));
  }
  probes.push(embedderProbe(engram.embedder));
  if (engram.reranker !== undefined) probes.push(embedderProbe(engram.reranker, 'reranker'));
  return new DependencyHealth(probes);
}

/** Everything `buildApp` needs from an open Engram (the server and the tests build the same app). */
export function appDeps(engram: Engram, health: Health, log?: Logger): AppDeps {
  const { config } = engram;
  const mcpLog: McpLog = log ?? { error: () => undefined };
  return {
    memories: engram.memories,
    search: engram.search,
    apiKeys: engram.apiKeys,
    audit: engram.audit,
    jobs: engram.jobs,
    code: { repos: engram.repos, query: engram.code, graph: engram.codeGraph },
    codeSearch: engram.codeSearch,
    authenticator: engram.authenticator,
    authFailures: engram.authFailures,
    health,
    dependencies: dependencyHealth(engram),
    metrics: engram.metrics,
    metricsPublic: config.metricsPublic,
    rateLimit: {
      limiter: engram.rateLimiter,
      quotas: engram.quotas,
      enabled: config.rateLimit.enabled,
      onReject: (cls) => engram.metrics.rateLimitRejections.inc({ class: cls }),
      ...(log === undefined ? {} : { log }),
    },
    bodyLimit: config.limits.bodyBytes,
    batchBodyLimit: config.limits.batchBodyBytes,
    http: config.http,
    publicUrl: config.auth.publicUrl,
    auditReads: config.auditReads,
    version: VERSION,
    tracer: tracerOf(engram),
    mcp: {
      createServer: mcpServerFactory(engram, mcpLog),
      config: config.mcp,
      listenHost: config.host,
      publicUrl: config.auth.publicUrl,
      authorizationServers: config.auth.authorizationServers,
      dpopAlgorithms: engram.authenticator.dpopAlgorithms,
      dpopRequired: engram.authenticator.requiresDpop,
    },
    ...(log === undefined ? {} : { logger: log }),
  };
}
