import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { buildApp, type AppDeps } from './app.ts';
import { Authenticator } from './auth/authenticator.ts';
import { DpopVerifier } from './auth/dpop.ts';
import { JwtVerifier } from './auth/jwt-verifier.ts';
import { AuditService } from './domain/audit/audit.service.ts';
import { GraphService } from './domain/graph/graph.service.ts';
import { OrgService } from './domain/tenancy/org.service.ts';
import { redactedSummary, type Config } from './config/config.ts';
import { MemoryService } from './domain/memory/memory.service.ts';
import { ReembedService } from './domain/memory/reembed.service.ts';
import { SearchService } from './domain/search/search.service.ts';
import { ApiKeyService } from './domain/tenancy/api-key.service.ts';
import { createEmbedder } from './embed/create-embedder.ts';
import { ResilientEmbedder } from './embed/resilient-embedder.ts';
import type { RequestContext } from './domain/tenancy/tenancy.types.ts';
import { createMcpServer, type McpLog, type McpOrigin } from './mcp/server.ts';
import { graphTools } from './mcp/tools/graph.tools.ts';
import { memoryTools } from './mcp/tools/memory.tools.ts';
import { DependencyHealth, embedderProbe, Health, pingProbe, type DependencyProbe } from './ops/health.ts';
import { Metrics } from './ops/metrics.ts';
import type { Cache } from './ports/cache.ts';
import { DataDirLock } from './storage/local/data-dir-lock.ts';
import { LocalCache } from './storage/local/local-cache.ts';
import { openDatabase, type Database } from './storage/postgres/database.ts';
import { Migrator, migrationLabel } from './storage/postgres/migrator.ts';
import { PgSystemStore, PgTenantDb } from './storage/postgres/tenant-db.pg.ts';
import { ValkeyCache } from './storage/valkey/valkey-cache.ts';

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
  readonly memories: MemoryService;
  readonly graph: GraphService;
  readonly search: SearchService;
  readonly apiKeys: ApiKeyService;
  readonly orgs: OrgService;
  readonly audit: AuditService;
  readonly authenticator: Authenticator;
  readonly reembed: ReembedService;
  /** Prometheus series for this instance (its own registry). */
  readonly metrics: Metrics;
  /** Held while the embedded store is open; undefined on PostgreSQL. */
  readonly lock: DataDirLock | undefined;
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly log: Logger;
  /** Apply pending migrations (default true). */
  readonly migrate?: boolean;
}

async function openWithRetry(config: Config, log: Logger): Promise<Database> {
  const deadline = Date.now() + (config.store.kind === 'postgres' ? 30_000 : 0);
  for (let attempt = 1; ; attempt++) {
    try {
      const db = await openDatabase(config.store);
      await db.ping();
      return db;
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      const wait = Math.min(250 * 2 ** attempt, 4_000);
      log.warn({ attempt, waitMs: wait, err: (e as Error).message }, 'database not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export async function openEngram(config: Config, opts: OpenOptions): Promise<Engram> {
  const { log } = opts;
  mkdirSync(config.dataDir, { recursive: true });
  const lock = config.store.kind === 'pglite' ? DataDirLock.acquire(config.dataDir) : undefined;
  const closers: Array<() => Promise<void>> = [];
  try {
    const database = await openWithRetry(config, log);
    closers.push(() => database.close());
    const migrator = new Migrator(database.adminDb, database.kind, undefined, {
      'engram.region': config.residency.region,
    });
    if (opts.migrate !== false) {
      const runs = await migrator.up();
      for (const r of runs) log.info({ migration: migrationLabel(r) }, 'migration applied');
    }

    let cache: Cache;
    if (config.valkeyUrl === undefined) {
      cache = new LocalCache();
    } else {
      const valkey = new ValkeyCache(config.valkeyUrl, { keyPrefix: config.valkeyKeyPrefix });
      await valkey.connect().catch((e: unknown) => {
        log.warn({ err: (e as Error).message }, 'Valkey not reachable; caching will resume when it is');
      });
      cache = valkey;
    }
    closers.push(() => cache.close());

    const metrics = new Metrics();
    metrics.watch({ pool: () => database.poolStats() });
    const provider = await createEmbedder(config.embedding, path.join(config.dataDir, 'models'));
    const embedder = new ResilientEmbedder(provider, cache, {
      timeoutMs: config.embedding.timeoutMs,
      retries: config.embedding.retries,
      breakerThreshold: config.embedding.breakerThreshold,
      halfOpenAfterMs: config.embedding.breakerHalfOpenMs,
      observer: metrics.embedderObserver(),
    });
    closers.push(() => embedder.close());
    metrics.watch({ breaker: { provider: embedder.provider, state: () => embedder.breakerState } });

    const system = new PgSystemStore(database.db, database.adminDb);
    if (await migrator.isCurrent()) {
      await system.registerEmbeddingModel({
        name: embedder.model,
        provider: embedder.provider,
        dimension: embedder.dimension,
      });
    }
    const ranker = await system.lexicalRanker().catch(() => 'ts_rank_cd' as const);
    const canActAsSystem = await system.canActAsSystem().catch(() => false);
    if (!canActAsSystem) {
      log.warn(
        'the database user is not a member of engram_system: full-text search cannot use its GIN index under RLS (see docs/deployment.md)',
      );
    }
    const tenantDb = new PgTenantDb(database.db, { hasBm25: () => ranker === 'bm25', canActAsSystem });
    const onEmbedError = (e: unknown) =>
      log.warn({ err: (e as Error).message }, 'embedding failed; vector signal degraded');
    const memories = new MemoryService({ tenantDb, embedder, limits: config.limits, onEmbedError });
    const graph = new GraphService({ tenantDb, embedder, onEmbedError });
    const search = new SearchService({ tenantDb, system, embedder, limits: config.limits, onEmbedError });
    const apiKeys = new ApiKeyService({ tenantDb, system });
    const orgs = new OrgService({ system, residency: config.residency });
    const audit = new AuditService({ tenantDb, system, onRecordFailure: () => metrics.auditAppendFailures.inc() });
    const authenticator = new Authenticator({
      apiKeys,
      orgs,
      jwt: config.auth.jwt === undefined ? undefined : new JwtVerifier(config.auth.jwt),
      dpop: new DpopVerifier({
        iatWindowSeconds: config.auth.dpop.iatWindowSeconds,
        // Valkey makes replay detection hold across replicas; in-process, a
        // dedicated cache keeps embedding entries from evicting seen jtis.
        replayCache: config.valkeyUrl === undefined ? new LocalCache(200_000) : cache,
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
    return {
      config,
      database,
      migrator,
      system,
      cache,
      embedder,
      memories,
      graph,
      search,
      apiKeys,
      orgs,
      audit,
      authenticator,
      reembed,
      metrics,
      lock,
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

export function createLogger(config: Config): Logger {
  return pino({
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
      ],
      censor: '***',
    },
  });
}

export interface RunningServer {
  readonly url: string;
  readonly engram: Engram;
  stop(): Promise<void>;
}

export async function startServer(config: Config, log: Logger = createLogger(config)): Promise<RunningServer> {
  log.info({ config: redactedSummary(config) }, 'starting Engram');
  const engram = await openEngram(config, { log });
  const { apiKeys, database, migrator } = engram;

  const boot = await apiKeys.bootstrap(config.residency.region);
  if (boot.adminKey !== undefined) {
    const keyFile = path.join(config.dataDir, 'admin.key');
    writeFileSync(keyFile, `${boot.adminKey}\n`, { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    process.stdout.write(
      `\n  Engram created the org "default" and an admin API key (shown once):\n\n    ${boot.adminKey}\n\n` +
        `  It is also saved in ${keyFile} (mode 0600).\n\n`,
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
  // autovacuum) also refresh planner statistics once enough rows changed.
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = engram.reembed
      .run()
      .then(async (r) => {
        if (r.embedded > 0) log.info({ embedded: r.embedded }, 're-embedded memories');
        if (r.error !== undefined) log.warn({ err: (r.error as Error).message }, 're-embed paused; will retry');
        if (database.kind === 'pglite' && (await engram.system.analyze())) log.debug('refreshed planner statistics');
      })
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'background maintenance failed; will retry'))
      .finally(() => {
        if (timer !== undefined) timer = setTimeout(tick, config.reembedIntervalMs);
      });
  };
  if (config.reembedIntervalMs > 0) timer = setTimeout(tick, 1_000);

  let stopped = false;
  return {
    url,
    engram,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      health.markShuttingDown();
      clearTimeout(timer);
      timer = undefined;
      await app.close();
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
  ];
  return (ctx, origin) =>
    createMcpServer(ctx, { tools, memories: engram.memories, audit: engram.audit, log, version: VERSION }, origin);
}

/** Store, Valkey (when configured) and embedder, for /health/deps. */
export function dependencyHealth(engram: Engram): DependencyHealth {
  const probes: DependencyProbe[] = [pingProbe('store', () => engram.database.ping())];
  if (engram.cache.kind === 'valkey') probes.push(pingProbe('valkey', () => engram.cache.ping()));
  probes.push(embedderProbe(engram.embedder));
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
    authenticator: engram.authenticator,
    health,
    dependencies: dependencyHealth(engram),
    metrics: engram.metrics,
    metricsPublic: config.metricsPublic,
    bodyLimit: config.limits.bodyBytes,
    http: config.http,
    publicUrl: config.auth.publicUrl,
    auditReads: config.auditReads,
    version: VERSION,
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
