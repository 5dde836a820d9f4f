import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from '../errors.ts';
import { parseHostEntry } from '../net/outbound-policy.ts';

/**
 * The only reader of the environment. `loadConfig(env)` validates every variable
 * at once, so a bad deployment fails at start naming all of its mistakes, and
 * returns a frozen object that the rest of the app receives as a parameter.
 *
 * Secrets may come from `NAME_FILE` (a path whose content is the value), the
 * convention of Docker/Kubernetes secrets.
 */

const SECRET_VARS = [
  'DATABASE_URL',
  'DATABASE_ADMIN_URL',
  'DATABASE_SYSTEM_URL',
  'VALKEY_URL',
  'OPENAI_API_KEY',
  'RERANK_API_KEY',
  'ENGRAM_API_KEY',
  'AUTH_JWKS',
  'AUTH_HS256_SECRET',
  'DPOP_NONCE_SECRET',
  'OTEL_EXPORTER_OTLP_HEADERS',
] as const;

const list = (def: string) =>
  z
    .string()
    .default(def)
    .transform((v) =>
      v
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== ''),
    );

/** Git transports a repository URL may be enabled for (CODE_GIT_PROTOCOLS). */
const GIT_PROTOCOLS: readonly string[] = ['https', 'http', 'ssh', 'git'];

const REGION_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

const intFrom = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);

const boolFrom = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

const optionalUrl = (protocols: readonly string[]) =>
  z
    .string()
    .trim()
    .min(1)
    .refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL starting with ${protocols.join(' or ')}//`,
    )
    .optional();

const envSchema = z.object({
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intFrom(8420, 0, 65_535),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ENGRAM_DATA_DIR: z.string().min(1).default('./.engram'),
  ENGRAM_URL: optionalUrl(['http:', 'https:']),
  ENGRAM_API_KEY: z.string().min(1).optional(),
  DATABASE_URL: optionalUrl(['postgres:', 'postgresql:']),
  DATABASE_ADMIN_URL: optionalUrl(['postgres:', 'postgresql:']),
  DATABASE_SYSTEM_URL: optionalUrl(['postgres:', 'postgresql:']),
  DATABASE_POOL_MAX: intFrom(10, 1, 500),
  DATABASE_SYSTEM_POOL_MAX: intFrom(3, 1, 100),
  DATABASE_POOL_IDLE_TIMEOUT_MS: intFrom(30_000, 100, 3_600_000),
  DATABASE_CONNECT_TIMEOUT_MS: intFrom(5_000, 100, 120_000),
  DATABASE_STATEMENT_TIMEOUT_MS: intFrom(30_000, 0, 3_600_000),
  STARTUP_TIMEOUT_MS: intFrom(30_000, 0, 600_000),
  STORE_RETRIES: intFrom(1, 0, 10),
  STORE_BREAKER_THRESHOLD: intFrom(5, 1, 1000),
  STORE_BREAKER_HALF_OPEN_MS: intFrom(5_000, 100, 3_600_000),
  VALKEY_TIMEOUT_MS: intFrom(500, 50, 60_000),
  VALKEY_RETRIES: intFrom(1, 0, 10),
  VALKEY_BREAKER_THRESHOLD: intFrom(5, 1, 1000),
  VALKEY_BREAKER_HALF_OPEN_MS: intFrom(5_000, 100, 3_600_000),
  VALKEY_URL: optionalUrl(['redis:', 'rediss:', 'valkey:', 'valkeys:']),
  VALKEY_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'letters, digits and : _ . - only')
    .default('engram:'),
  EMBEDDER: z.enum(['builtin', 'onnx', 'openai']).default('builtin'),
  EMBEDDING_MODEL: z.string().min(1).optional(),
  EMBEDDING_DIMENSION: intFrom(384, 8, 8192),
  EMBEDDING_MODEL_DIR: z.string().min(1).optional(),
  EMBEDDING_ALLOW_DOWNLOAD: boolFrom(false),
  EMBEDDING_TIMEOUT_MS: intFrom(15_000, 100, 600_000),
  EMBEDDING_RETRIES: intFrom(2, 0, 10),
  EMBEDDING_BREAKER_THRESHOLD: intFrom(5, 1, 1000),
  EMBEDDING_BREAKER_HALF_OPEN_MS: intFrom(30_000, 100, 3_600_000),
  OPENAI_BASE_URL: optionalUrl(['http:', 'https:']),
  OPENAI_API_KEY: z.string().min(1).optional(),
  BODY_LIMIT_BYTES: intFrom(1_048_576, 1024, 104_857_600),
  BATCH_BODY_LIMIT_BYTES: intFrom(16_777_216, 1024, 1_073_741_824),
  SEARCH_MAX_QUERY_CHARS: intFrom(2_000, 1, 100_000),
  SEARCH_MAX_LIMIT: intFrom(100, 1, 1000),
  /** Hybrid search weights; unset: by embedder kind (docs/search.md). */
  SEARCH_VECTOR_WEIGHT: z.coerce.number().min(0).max(100).optional(),
  SEARCH_CONTEXT_WEIGHT: z.coerce.number().min(0).max(10).default(0.2),
  SEARCH_GRAPH_WEIGHT: z.coerce.number().min(0).max(10).default(0.3),
  SEARCH_NEIGHBOUR_WINDOW_S: intFrom(3_600, 0, 31_536_000),
  RERANKER: z.enum(['none', 'http']).default('none'),
  RERANK_BASE_URL: optionalUrl(['http:', 'https:']),
  RERANK_API: z.enum(['cohere', 'tei']).default('cohere'),
  RERANK_MODEL: z.string().min(1).max(200).default('rerank'),
  RERANK_API_KEY: z.string().min(1).optional(),
  RERANK_CANDIDATES: intFrom(30, 2, 200),
  RERANK_TIMEOUT_MS: intFrom(2_000, 50, 60_000),
  RERANK_RETRIES: intFrom(1, 0, 10),
  RERANK_BREAKER_THRESHOLD: intFrom(5, 1, 1000),
  RERANK_BREAKER_HALF_OPEN_MS: intFrom(30_000, 100, 3_600_000),
  MEMORY_MAX_CONTENT_CHARS: intFrom(100_000, 1, 10_000_000),
  MEMORY_MAX_METADATA_BYTES: intFrom(16_384, 2, 1_048_576),
  MEMORY_MAX_METADATA_DEPTH: intFrom(8, 1, 64),
  REEMBED_INTERVAL_MS: intFrom(30_000, 0, 86_400_000),
  JOBS_CONCURRENCY: intFrom(2, 0, 256),
  JOBS_POLL_MS: intFrom(1_000, 0, 3_600_000),
  JOBS_MAX_ATTEMPTS: intFrom(10, 1, 1_000),
  JOBS_BACKOFF_BASE_MS: intFrom(5_000, 0, 86_400_000),
  JOBS_BACKOFF_MAX_MS: intFrom(900_000, 0, 86_400_000),
  JOBS_LEASE_MS: intFrom(300_000, 1_000, 86_400_000),
  JOBS_RETENTION_HOURS: intFrom(168, 0, 87_600),
  // Unset: one below JOBS_CONCURRENCY (at least 1); 0: no cap.
  JOBS_MAX_RUNNING_PER_ORG: z.coerce.number().int().min(0).max(100_000).optional(),
  CODE_ALLOWED_ROOTS: list(''),
  CODE_ORG_DIRS: list(''),
  CODE_GIT_PROTOCOLS: list('https'),
  CODE_GIT_ALLOWED_HOSTS: list(''),
  CODE_GIT_ALLOW_PRIVATE: boolFrom(false),
  CODE_GIT_TIMEOUT_MS: intFrom(600_000, 1_000, 86_400_000),
  CODE_GIT_MAX_CLONE_BYTES: intFrom(1_073_741_824, 1_024, 1_099_511_627_776),
  CODE_GIT_SSH_KNOWN_HOSTS: z.string().min(1).optional(),
  CODE_GIT_SSH_KEY_FILE: z.string().min(1).optional(),
  CODE_MAX_FILE_BYTES: intFrom(1_048_576, 1, 1_073_741_824),
  CODE_MAX_FILES: intFrom(50_000, 1, 10_000_000),
  CODE_PRECISE: boolFrom(true),
  CODE_PRECISE_MAX_FILES: intFrom(5_000, 0, 10_000_000),
  // One parser thread per core but one (the event loop and the database need the other); 0: parse on the event loop.
  CODE_PARSE_THREADS: intFrom(Math.max(1, availableParallelism() - 1), 0, 64),
  CODE_PARSE_WORKER_MAX_MB: intFrom(512, 16, 16_384),
  CODE_MAX_REPO_BYTES: intFrom(268_435_456, 1, 1_099_511_627_776),
  CODE_MAX_REPOS_PER_ORG: intFrom(100, 1, 1_000_000),
  CODE_MAX_ORG_BYTES: intFrom(2_147_483_648, 1, 1_099_511_627_776),
  SHUTDOWN_TIMEOUT_MS: intFrom(10_000, 0, 600_000),
  SHUTDOWN_DELAY_MS: intFrom(0, 0, 300_000),
  AUTH_ISSUER: z.string().trim().min(1).optional(),
  AUTH_AUTHORIZATION_SERVERS: list(''),
  MCP_ALLOWED_ORIGINS: list(''),
  MCP_ALLOWED_HOSTS: list(''),
  MCP_SSE_MAX_SESSIONS: intFrom(10, 1, 10_000),
  MCP_SSE_IDLE_TIMEOUT_MS: intFrom(900_000, 1_000, 86_400_000),
  AUTH_AUDIENCE: list(''),
  AUTH_JWKS_URL: optionalUrl(['https:', 'http:']),
  AUTH_JWKS: z.string().min(1).optional(),
  AUTH_HS256_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  AUTH_ALGORITHMS: list('EdDSA,ES256,RS256'),
  AUTH_CLOCK_SKEW_SECONDS: intFrom(30, 0, 600),
  // A token is refused this long after its iat, whatever its exp says.
  AUTH_MAX_TOKEN_AGE_SECONDS: intFrom(86_400, 60, 31_536_000),
  AUTH_REQUIRE_AT_JWT: boolFrom(false),
  AUTH_ORG_CLAIM: z.string().min(1).default('org_id'),
  AUTH_SCOPE_CLAIM: z.string().min(1).default('scope'),
  AUTH_ROLES_CLAIM: z.string().min(1).default('roles'),
  AUTH_REQUIRE_DPOP: boolFrom(false),
  // Per client address (TRUST_PROXY decides what that is); 0: unlimited.
  AUTH_FAILURES_PER_MIN: intFrom(30, 0, 1_000_000),
  AUDIT_REFUSAL_WINDOW_SECONDS: intFrom(60, 1, 86_400),
  DPOP_IAT_WINDOW_SECONDS: intFrom(60, 1, 3600),
  DPOP_NONCE: boolFrom(false),
  // The explicit opt-out of PUBLIC_URL with JWTs on: DPoP htu is then checked against the Host header.
  DPOP_HTU_FROM_HOST: boolFrom(false),
  // Proofs (jti entries) per minute per org named by the token, before the replay cache stores them.
  DPOP_PROOFS_PER_MIN: intFrom(3_000, 1, 1_000_000),
  DPOP_NONCE_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  PUBLIC_URL: optionalUrl(['http:', 'https:']),
  TRUST_PROXY: boolFrom(false),
  CORS_ORIGINS: list(''),
  HSTS_MAX_AGE_SECONDS: intFrom(15_552_000, 0, 63_072_000),
  ENGRAM_REGION: z.string().regex(REGION_RE, 'lowercase letters, digits and - only').default('local'),
  ENGRAM_SERVED_REGIONS: list(''),
  AUDIT_READS: boolFrom(false),
  RATE_LIMIT_ENABLED: boolFrom(true),
  RATE_LIMIT_READ_PER_MIN: intFrom(1200, 1, 1_000_000),
  RATE_LIMIT_WRITE_PER_MIN: intFrom(600, 1, 1_000_000),
  RATE_LIMIT_SEARCH_PER_MIN: intFrom(600, 1, 1_000_000),
  RATE_LIMIT_ADMIN_PER_MIN: intFrom(120, 1, 1_000_000),
  // Items, not requests: a full batch of 1,000 costs 1,000.
  RATE_LIMIT_IMPORT_PER_MIN: intFrom(60_000, 1, 1_000_000),
  RATE_LIMIT_BURST_SECONDS: intFrom(15, 1, 3600),
  METRICS_PUBLIC: boolFrom(false),
  NODE_ENV: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl(['http:', 'https:']),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalUrl(['http:', 'https:']),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_SERVICE_NAME: z.string().trim().min(1).default('engram'),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
  ENGRAM_TRACE_SAMPLE_RATIO: z.coerce.number().min(0).max(1).optional(),
});

export type Env = Readonly<Record<string, string | undefined>>;

/** Hybrid memory search tuning (docs/search.md). */
export interface SearchConfig {
  /** Weight of the vector signal next to BM25's 1; undefined: 0.05 with the builtin embedder, 1 with a model. */
  readonly vectorWeight: number | undefined;
  /** Share of a lexical hit's score given to its neighbouring turns. */
  readonly contextWeight: number;
  /** Weight of memories reached through the knowledge graph. */
  readonly graphWeight: number;
  readonly neighbourWindowSeconds: number;
  /** Fused hits the reranker re-scores. */
  readonly rerankCandidates: number;
  /** The optional reranker over hybrid search (RERANKER=http); undefined: off. */
  readonly reranker: RerankerConfig | undefined;
}

export interface RerankerConfig {
  readonly baseUrl: string;
  readonly api: 'cohere' | 'tei';
  readonly model: string;
  readonly apiKey: string | undefined;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly breakerThreshold: number;
  readonly halfOpenAfterMs: number;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  readonly dataDir: string;
  /** Base URL CLI commands use to reach a running server. */
  readonly serverUrl: string;
  /** True when ENGRAM_URL was set explicitly: CLI commands then always use HTTP. */
  readonly serverUrlExplicit: boolean;
  /** API key CLI commands present to a server (ENGRAM_API_KEY[_FILE]). */
  readonly apiKey: string | undefined;
  readonly store: StoreConfig;
  readonly valkeyUrl: string | undefined;
  /** Namespace for every Valkey key, so deployments can share one Valkey. */
  readonly valkeyKeyPrefix: string;
  readonly embedding: EmbeddingConfig;
  readonly resilience: ResilienceConfig;
  readonly limits: {
    readonly bodyBytes: number;
    /** Body limit of the bulk write (POST /v1/memories/batch), which carries up to 1,000 memories. */
    readonly batchBodyBytes: number;
    readonly searchQueryChars: number;
    readonly searchLimit: number;
    readonly memoryContentChars: number;
    /** A memory's metadata as JSON, in bytes. */
    readonly memoryMetadataBytes: number;
    /** A memory's metadata nesting (the object itself is 1). */
    readonly memoryMetadataDepth: number;
  };
  readonly search: SearchConfig;
  readonly reembedIntervalMs: number;
  readonly jobs: JobsConfig;
  readonly code: CodeConfig;
  readonly shutdownTimeoutMs: number;
  /**
   * After SIGTERM, how long to keep serving with /health/ready at 503 before
   * the listener closes (set it above the load balancer's probe interval).
   */
  readonly shutdownDelayMs: number;
  readonly auth: AuthConfig;
  readonly http: HttpConfig;
  readonly mcp: McpConfig;
  /** This instance's home region (new orgs get it) and the regions whose orgs it may serve. */
  readonly residency: { readonly region: string; readonly servedRegions: readonly string[] };
  /** Audit successful reads too (writes, admin actions and every failure are always audited). */
  readonly auditReads: boolean;
  /**
   * Token-bucket rate limits per org and route class: `perMinute` is the
   * sustained rate, the burst is `burstSeconds` of it; orgs may override
   * `perMinute` in `org_quotas`.
   */
  readonly rateLimit: {
    readonly enabled: boolean;
    readonly perMinute: {
      readonly read: number;
      readonly write: number;
      readonly search: number;
      readonly admin: number;
      /** Items (memories) per minute through the bulk write, not requests. */
      readonly import: number;
    };
    readonly burstSeconds: number;
  };
  /** Serve GET /metrics without credentials (else it needs the `ops:read` scope). */
  readonly metricsPublic: boolean;
  readonly tracing: TracingConfig;
}

/** OpenTelemetry traces: exported by OTLP/HTTP only when an endpoint is configured. */
export interface TracingConfig {
  /** Full OTLP/HTTP traces URL (…/v1/traces); undefined: tracing off. */
  readonly endpoint: string | undefined;
  /** Extra export headers (OTEL_EXPORTER_OTLP_HEADERS), e.g. a collector's API key. */
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  /** Share of new traces sampled (0…1); a sampled or unsampled parent (`traceparent`) decides for its children. */
  readonly sampleRatio: number;
}

/** Code intelligence: which local paths may be registered as repositories, and what the indexer reads. */
export interface CodeConfig {
  /**
   * Absolute directories, none inside another; an org may register local
   * repositories (by path or file:// URL) under `<root>/<org slug>/` only. Empty: none.
   */
  readonly allowedRoots: readonly string[];
  /** Directories the operator gave one org each (CODE_ORG_DIRS `slug=/dir`): that org may register under them too. */
  readonly orgDirs: ReadonlyArray<{ readonly slug: string; readonly dir: string }>;
  /** Where git may fetch from (docs/security.md, "Outbound connections and local paths"). */
  readonly git: GitConfig;
  /** Files larger than this are not indexed. */
  readonly maxFileBytes: number;
  /** The walk stops after this many files per repository. */
  readonly maxFiles: number;
  /** The precise pass (TypeScript compiler) after the heuristic resolution of JS/TS repositories with a tsconfig. */
  readonly precise: boolean;
  /** Repositories with more JS/TS files than this skip the precise pass. */
  readonly preciseMaxFiles: number;
  /** Worker threads that parse files during an index run; 0: the event loop parses. */
  readonly parseThreads: number;
  /** Each parser thread's JS heap cap in MB: a file needing more stops its run, not the server. */
  readonly parseWorkerMaxMb: number;
  /** Bytes of source files one repository may have to index; a run over it fails (not retried). */
  readonly maxRepoBytes: number;
  /** Repositories one org may register; past it, registering answers 409 QUOTA_EXCEEDED. */
  readonly maxReposPerOrg: number;
  /** Bytes of source files one org may have indexed across its repositories; a run that would pass it fails (not retried). */
  readonly maxOrgBytes: number;
}

/** Git remotes: the outbound policy they pass and the limits of a clone. */
export interface GitConfig {
  /** URL schemes a repository may use, without the colon: `https` by default; `http`, `ssh`, `git` when enabled. */
  readonly protocols: readonly string[];
  /** `host` or `host:port` entries that may resolve to any address and use the listed port. */
  readonly allowedHosts: readonly string[];
  /** Any host may resolve to loopback, private, ULA or CGNAT addresses (never link-local). */
  readonly allowPrivate: boolean;
  /** A clone or fetch is killed after this long. */
  readonly timeoutMs: number;
  /** A clone or fetch that grows the checkout past this many bytes on disk is stopped and removed. */
  readonly maxCloneBytes: number;
  /** known_hosts for ssh remotes (required when ssh is enabled: host keys are checked strictly). */
  readonly sshKnownHosts: string | undefined;
  /** The private key ssh offers; none: only what the remote allows without one. */
  readonly sshKeyFile: string | undefined;
}

/** The durable job queue and this instance's worker (see docs/operations.md, "Background jobs"). */
export interface JobsConfig {
  /** Jobs this instance runs at once; 0: this instance runs none (others may). */
  readonly concurrency: number;
  /** Pause between polls when nothing is due; 0: the server starts no worker. */
  readonly pollMs: number;
  /** Runs before a job is dead. */
  readonly maxAttempts: number;
  /** Retry delay after the first failure, doubling per attempt (with jitter) up to `backoffMaxMs`. */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** How long a worker holds a claimed job before another may reclaim it. */
  readonly leaseMs: number;
  /** Succeeded jobs are deleted this long after they finished. */
  readonly retentionMs: number;
  /**
   * Jobs of one org running at once, counted across every worker of the
   * store, so one org never holds every slot; undefined: no cap.
   */
  readonly maxRunningPerOrg: number | undefined;
}

export interface AuthConfig {
  /** OAuth 2.1 bearer JWTs; undefined when no verification key source is configured (API keys only). */
  readonly jwt: JwtConfig | undefined;
  readonly dpop: {
    /** Refuse JWTs that are not DPoP-bound. */
    readonly required: boolean;
    readonly iatWindowSeconds: number;
    /** Stateless server nonces (RFC 9449 §8); a shared secret keeps them valid across replicas. */
    readonly nonce: boolean;
    readonly nonceSecret: string | undefined;
    /** Proofs per minute per org before their jti is stored (the replay cache fills no faster). */
    readonly proofsPerMinute: number;
  };
  /** The URL clients use to reach this server (for DPoP `htu` behind a proxy). */
  readonly publicUrl: string | undefined;
  /**
   * Failed authentications per minute per client address (the burst is one
   * minute's worth); past it the address gets 429 before any lookup. 0: unlimited.
   */
  readonly failuresPerMinute: number;
  /** Refused authentications are audited as one entry per source per this many seconds. */
  readonly refusalAuditWindowSeconds: number;
  /** Authorization servers named in the RFC 9728 metadata (default: the JWT issuer). */
  readonly authorizationServers: readonly string[];
}

export interface McpConfig {
  /** Origins allowed to call the MCP endpoints from a browser (DNS-rebinding protection). */
  readonly allowedOrigins: readonly string[];
  /** Host headers accepted on the MCP endpoints; empty: loopback names when listening on loopback, else any. */
  readonly allowedHosts: readonly string[];
  /** Legacy SSE sessions one principal (org and actor) may hold open at once. */
  readonly sseMaxSessions: number;
  /** An SSE session with no message for this long is closed. */
  readonly sseIdleTimeoutMs: number;
}

export interface JwtConfig {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUrl: string | undefined;
  /** A JWKS document ({"keys":[…]}) given inline or by file: several keys with `kid`s allow rotation. */
  readonly jwks: string | undefined;
  readonly hs256Secret: string | undefined;
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  /** Tokens are refused this many seconds after their `iat` (which is required, and not in the future). */
  readonly maxTokenAgeSeconds: number;
  /** Refuse tokens whose header `typ` is not `at+jwt` (RFC 9068), so an ID token cannot pass as an access token. */
  readonly requireAtJwt: boolean;
  readonly orgClaim: string;
  readonly scopeClaim: string;
  readonly rolesClaim: string;
}

export interface HttpConfig {
  readonly trustProxy: boolean;
  /** Exact origins allowed by CORS; empty means no cross-origin access. */
  readonly corsOrigins: readonly string[];
  /** Strict-Transport-Security max-age, sent only on requests that arrived over TLS. */
  readonly hstsMaxAgeSeconds: number;
}

export type StoreConfig =
  | { readonly kind: 'pglite'; readonly dataDir: string }
  | {
      readonly kind: 'postgres';
      readonly url: string;
      readonly adminUrl: string;
      /** Login of the system pool (sessions as engram_system); DATABASE_URL unless set. */
      readonly systemUrl: string;
      readonly poolMax: number;
      readonly systemPoolMax: number;
      readonly idleTimeoutMs: number;
      readonly connectTimeoutMs: number;
      readonly statementTimeoutMs: number;
    };

/** One dependency's circuit breaker and retries (see docs/operations.md, "Circuit breakers"). */
export interface BreakerConfig {
  /** Per-call deadline; 0: the driver's own timeouts apply (the store: connect and statement timeouts). */
  readonly timeoutMs: number;
  /** Extra attempts, for idempotent calls only. */
  readonly retries: number;
  readonly breakerThreshold: number;
  readonly halfOpenAfterMs: number;
}

export interface ResilienceConfig {
  /** How long startup waits for PostgreSQL before giving up with a one-line message. */
  readonly startupTimeoutMs: number;
  readonly store: BreakerConfig;
  readonly valkey: BreakerConfig;
}

export interface EmbeddingConfig {
  readonly provider: 'builtin' | 'onnx' | 'openai';
  readonly model: string;
  readonly dimension: number;
  readonly modelDir: string | undefined;
  readonly allowDownload: boolean;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly breakerThreshold: number;
  readonly breakerHalfOpenMs: number;
  readonly openaiBaseUrl: string;
  readonly openaiApiKey: string | undefined;
}

const DEFAULT_MODELS = {
  builtin: 'engram-hash-v1',
  onnx: 'Xenova/all-MiniLM-L6-v2',
  openai: 'text-embedding-3-small',
} as const;

/** Resolves `X_FILE` variables into `X`; a value and a file for the same name is an error. */
function resolveFileSecrets(env: Env, problems: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const name of SECRET_VARS) {
    const file = env[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[name] !== undefined && env[name] !== '') {
      problems.push(`${name}: set either ${name} or ${name}_FILE, not both`);
      continue;
    }
    try {
      out[name] = readFileSync(file, 'utf8').trim();
    } catch (e) {
      problems.push(`${name}_FILE: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  // Empty strings mean "unset" so `FOO= engram serve` behaves like no FOO.
  for (const [k, v] of Object.entries(out)) if (v === '') out[k] = undefined;
  return out;
}

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const resolved = resolveFileSecrets(env, problems);
  const parsed = envSchema.safeParse(resolved);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`${issue.path.join('.')}: ${issue.message}`);
    }
  }
  // Cross-field rules run on the raw values too, so every mistake is named at once.
  if (
    resolved.EMBEDDER === 'openai' &&
    resolved.OPENAI_BASE_URL === undefined &&
    resolved.OPENAI_API_KEY === undefined
  ) {
    problems.push('OPENAI_API_KEY: required when EMBEDDER=openai with the default OPENAI_BASE_URL');
  }
  if (resolved.RERANKER === 'http' && resolved.RERANK_BASE_URL === undefined) {
    problems.push('RERANK_BASE_URL: required when RERANKER=http');
  }
  if (resolved.DATABASE_ADMIN_URL !== undefined && resolved.DATABASE_URL === undefined) {
    problems.push('DATABASE_ADMIN_URL: only meaningful together with DATABASE_URL');
  }
  if (resolved.DATABASE_SYSTEM_URL !== undefined && resolved.DATABASE_URL === undefined) {
    problems.push('DATABASE_SYSTEM_URL: only meaningful together with DATABASE_URL');
  }
  const jwtSources = [resolved.AUTH_JWKS_URL, resolved.AUTH_JWKS, resolved.AUTH_HS256_SECRET].filter(
    (v) => v !== undefined,
  );
  if (jwtSources.length > 0) {
    if (resolved.AUTH_ISSUER === undefined) problems.push('AUTH_ISSUER: required when JWT verification is configured');
    if (resolved.PUBLIC_URL === undefined && !/^(true|1|yes)$/.test(resolved.DPOP_HTU_FROM_HOST ?? '')) {
      problems.push(
        'PUBLIC_URL: required when JWT verification is configured, so DPoP proofs (htu) are checked against the URL ' +
          'clients use rather than the Host header they send (DPOP_HTU_FROM_HOST=true opts out, for a server reached only directly)',
      );
    }
    if ((resolved.AUTH_AUDIENCE ?? '').trim() === '') {
      problems.push('AUTH_AUDIENCE: required when JWT verification is configured (tokens must be audience-bound)');
    }
  }
  if (resolved.AUTH_JWKS !== undefined) {
    try {
      const doc = JSON.parse(resolved.AUTH_JWKS) as { keys?: unknown };
      if (!Array.isArray(doc.keys) || doc.keys.length === 0) problems.push('AUTH_JWKS: must be a JWKS {"keys":[…]}');
    } catch {
      problems.push('AUTH_JWKS: is not valid JSON (expected a JWKS {"keys":[…]})');
    }
  }
  for (const alg of (resolved.AUTH_ALGORITHMS ?? '').split(',').map((a) => a.trim())) {
    if (alg.toLowerCase() === 'none') problems.push('AUTH_ALGORITHMS: "none" is never accepted');
    if (/^HS/i.test(alg) && resolved.AUTH_HS256_SECRET === undefined) {
      problems.push(`AUTH_ALGORITHMS: ${alg} needs AUTH_HS256_SECRET (shared-secret tokens are off by default)`);
    }
  }
  for (const r of (resolved.ENGRAM_SERVED_REGIONS ?? '').split(',').map((x) => x.trim())) {
    if (r !== '' && !REGION_RE.test(r)) problems.push(`ENGRAM_SERVED_REGIONS: "${r}" is not a region name`);
  }
  const otlpHeaders = parseOtlpHeaders(resolved.OTEL_EXPORTER_OTLP_HEADERS, problems);
  for (const o of (resolved.CORS_ORIGINS ?? '').split(',').map((x) => x.trim())) {
    if (o === '') continue;
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === o;
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`CORS_ORIGINS: "${o}" is not an origin like https://app.example.com (no path, no *)`);
  }
  const roots = (resolved.CODE_ALLOWED_ROOTS ?? '')
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '')
    .map((r) => path.resolve(r));
  for (const r of roots) {
    // Org directories are <root>/<slug>: a root inside another would be some org's directory.
    const outer = roots.find((o) => o !== r && !path.relative(o, r).startsWith('..'));
    if (outer !== undefined) problems.push(`CODE_ALLOWED_ROOTS: ${r} lies inside ${outer}; roots must not nest`);
  }
  const orgDirs: Array<{ slug: string; dir: string }> = [];
  for (const entry of (resolved.CODE_ORG_DIRS ?? '').split(',').map((x) => x.trim())) {
    if (entry === '') continue;
    const m = /^([a-z0-9][a-z0-9-]{0,62})=(\/.*)$/.exec(entry);
    if (m?.[1] === undefined || m[2] === undefined) {
      problems.push(`CODE_ORG_DIRS: "${entry}" is not <org slug>=<absolute directory>`);
      continue;
    }
    orgDirs.push({ slug: m[1], dir: path.resolve(m[2]) });
  }
  const inside = (child: string, parent: string) => !path.relative(parent, child).startsWith('..');
  for (const g of orgDirs) {
    const root = roots.find((r) => inside(g.dir, r) || inside(r, g.dir));
    if (root !== undefined) problems.push(`CODE_ORG_DIRS: ${g.dir} overlaps CODE_ALLOWED_ROOTS ${root}`);
    const other = orgDirs.find((o) => o.slug !== g.slug && (inside(g.dir, o.dir) || inside(o.dir, g.dir)));
    if (other !== undefined && other.slug > g.slug) {
      problems.push(`CODE_ORG_DIRS: ${g.dir} (${g.slug}) overlaps ${other.dir} (${other.slug})`);
    }
  }
  const gitProtocols = (resolved.CODE_GIT_PROTOCOLS ?? 'https').split(',').map((x) => x.trim());
  for (const p of gitProtocols) {
    if (p !== '' && !GIT_PROTOCOLS.includes(p)) {
      problems.push(
        `CODE_GIT_PROTOCOLS: "${p}" is not one of ${GIT_PROTOCOLS.join(', ')} (file:// follows CODE_ALLOWED_ROOTS)`,
      );
    }
  }
  if (gitProtocols.includes('ssh') && resolved.CODE_GIT_SSH_KNOWN_HOSTS === undefined) {
    problems.push('CODE_GIT_SSH_KNOWN_HOSTS: required when CODE_GIT_PROTOCOLS includes ssh (host keys are checked)');
  }
  for (const h of (resolved.CODE_GIT_ALLOWED_HOSTS ?? '').split(',').map((x) => x.trim())) {
    if (h === '') continue;
    try {
      parseHostEntry(h);
    } catch {
      problems.push(`CODE_GIT_ALLOWED_HOSTS: "${h}" is not a host or host:port`);
    }
  }
  if (problems.length > 0 || !parsed.success) {
    throw new AppError('CONFIG_INVALID', `Invalid configuration:\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.ENGRAM_DATA_DIR);
  const store: StoreConfig =
    e.DATABASE_URL === undefined
      ? { kind: 'pglite', dataDir: path.join(dataDir, 'pgdata') }
      : {
          kind: 'postgres',
          url: e.DATABASE_URL,
          adminUrl: e.DATABASE_ADMIN_URL ?? e.DATABASE_URL,
          systemUrl: e.DATABASE_SYSTEM_URL ?? e.DATABASE_URL,
          poolMax: e.DATABASE_POOL_MAX,
          systemPoolMax: e.DATABASE_SYSTEM_POOL_MAX,
          idleTimeoutMs: e.DATABASE_POOL_IDLE_TIMEOUT_MS,
          connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
          statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
        };
  const hostForUrl = e.HOST === '0.0.0.0' || e.HOST === '::' ? '127.0.0.1' : e.HOST;
  return Object.freeze({
    host: e.HOST,
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    dataDir,
    serverUrl: e.ENGRAM_URL ?? `http://${hostForUrl.includes(':') ? `[${hostForUrl}]` : hostForUrl}:${e.PORT}`,
    serverUrlExplicit: e.ENGRAM_URL !== undefined,
    apiKey: e.ENGRAM_API_KEY,
    store: Object.freeze(store),
    valkeyUrl: e.VALKEY_URL,
    valkeyKeyPrefix: e.VALKEY_KEY_PREFIX,
    embedding: Object.freeze({
      provider: e.EMBEDDER,
      model: e.EMBEDDING_MODEL ?? DEFAULT_MODELS[e.EMBEDDER],
      dimension: e.EMBEDDING_DIMENSION,
      modelDir: e.EMBEDDING_MODEL_DIR,
      allowDownload: e.EMBEDDING_ALLOW_DOWNLOAD,
      timeoutMs: e.EMBEDDING_TIMEOUT_MS,
      retries: e.EMBEDDING_RETRIES,
      breakerThreshold: e.EMBEDDING_BREAKER_THRESHOLD,
      breakerHalfOpenMs: e.EMBEDDING_BREAKER_HALF_OPEN_MS,
      openaiBaseUrl: e.OPENAI_BASE_URL ?? 'https://api.openai.com/v1',
      openaiApiKey: e.OPENAI_API_KEY,
    }),
    resilience: Object.freeze({
      startupTimeoutMs: e.STARTUP_TIMEOUT_MS,
      store: Object.freeze({
        timeoutMs: 0,
        retries: e.STORE_RETRIES,
        breakerThreshold: e.STORE_BREAKER_THRESHOLD,
        halfOpenAfterMs: e.STORE_BREAKER_HALF_OPEN_MS,
      }),
      valkey: Object.freeze({
        timeoutMs: e.VALKEY_TIMEOUT_MS,
        retries: e.VALKEY_RETRIES,
        breakerThreshold: e.VALKEY_BREAKER_THRESHOLD,
        halfOpenAfterMs: e.VALKEY_BREAKER_HALF_OPEN_MS,
      }),
    }),
    limits: Object.freeze({
      bodyBytes: e.BODY_LIMIT_BYTES,
      batchBodyBytes: e.BATCH_BODY_LIMIT_BYTES,
      searchQueryChars: e.SEARCH_MAX_QUERY_CHARS,
      searchLimit: e.SEARCH_MAX_LIMIT,
      memoryContentChars: e.MEMORY_MAX_CONTENT_CHARS,
      memoryMetadataBytes: e.MEMORY_MAX_METADATA_BYTES,
      memoryMetadataDepth: e.MEMORY_MAX_METADATA_DEPTH,
    }),
    search: Object.freeze({
      vectorWeight: e.SEARCH_VECTOR_WEIGHT,
      contextWeight: e.SEARCH_CONTEXT_WEIGHT,
      graphWeight: e.SEARCH_GRAPH_WEIGHT,
      neighbourWindowSeconds: e.SEARCH_NEIGHBOUR_WINDOW_S,
      rerankCandidates: e.RERANK_CANDIDATES,
      reranker:
        e.RERANKER === 'http' && e.RERANK_BASE_URL !== undefined
          ? Object.freeze({
              baseUrl: e.RERANK_BASE_URL,
              api: e.RERANK_API,
              model: e.RERANK_MODEL,
              apiKey: e.RERANK_API_KEY,
              timeoutMs: e.RERANK_TIMEOUT_MS,
              retries: e.RERANK_RETRIES,
              breakerThreshold: e.RERANK_BREAKER_THRESHOLD,
              halfOpenAfterMs: e.RERANK_BREAKER_HALF_OPEN_MS,
            })
          : undefined,
    }),
    reembedIntervalMs: e.REEMBED_INTERVAL_MS,
    jobs: Object.freeze({
      concurrency: e.JOBS_CONCURRENCY,
      pollMs: e.JOBS_POLL_MS,
      maxAttempts: e.JOBS_MAX_ATTEMPTS,
      backoffBaseMs: e.JOBS_BACKOFF_BASE_MS,
      backoffMaxMs: e.JOBS_BACKOFF_MAX_MS,
      leaseMs: e.JOBS_LEASE_MS,
      retentionMs: e.JOBS_RETENTION_HOURS * 3_600_000,
      // Unset: one slot left to other orgs on a shared PostgreSQL server; no
      // cap on the embedded store, where one org is the rule and an index run
      // must not hold up embedding its own memories.
      maxRunningPerOrg:
        e.JOBS_MAX_RUNNING_PER_ORG === undefined
          ? e.DATABASE_URL === undefined
            ? undefined
            : Math.max(1, e.JOBS_CONCURRENCY - 1)
          : e.JOBS_MAX_RUNNING_PER_ORG === 0
            ? undefined
            : e.JOBS_MAX_RUNNING_PER_ORG,
    }),
    code: Object.freeze({
      allowedRoots: e.CODE_ALLOWED_ROOTS.map((r) => path.resolve(r)),
      orgDirs: Object.freeze(orgDirs.map((g) => Object.freeze(g))),
      git: Object.freeze({
        protocols: e.CODE_GIT_PROTOCOLS,
        allowedHosts: e.CODE_GIT_ALLOWED_HOSTS,
        allowPrivate: e.CODE_GIT_ALLOW_PRIVATE,
        timeoutMs: e.CODE_GIT_TIMEOUT_MS,
        maxCloneBytes: e.CODE_GIT_MAX_CLONE_BYTES,
        sshKnownHosts: e.CODE_GIT_SSH_KNOWN_HOSTS === undefined ? undefined : path.resolve(e.CODE_GIT_SSH_KNOWN_HOSTS),
        sshKeyFile: e.CODE_GIT_SSH_KEY_FILE === undefined ? undefined : path.resolve(e.CODE_GIT_SSH_KEY_FILE),
      }),
      maxFileBytes: e.CODE_MAX_FILE_BYTES,
      maxFiles: e.CODE_MAX_FILES,
      precise: e.CODE_PRECISE,
      preciseMaxFiles: e.CODE_PRECISE_MAX_FILES,
      parseThreads: e.CODE_PARSE_THREADS,
      parseWorkerMaxMb: e.CODE_PARSE_WORKER_MAX_MB,
      maxRepoBytes: e.CODE_MAX_REPO_BYTES,
      maxReposPerOrg: e.CODE_MAX_REPOS_PER_ORG,
      maxOrgBytes: e.CODE_MAX_ORG_BYTES,
    }),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS,
    auth: Object.freeze({
      jwt:
        e.AUTH_JWKS_URL === undefined && e.AUTH_JWKS === undefined && e.AUTH_HS256_SECRET === undefined
          ? undefined
          : Object.freeze({
              issuer: e.AUTH_ISSUER ?? '',
              audiences: e.AUTH_AUDIENCE,
              jwksUrl: e.AUTH_JWKS_URL,
              jwks: e.AUTH_JWKS,
              hs256Secret: e.AUTH_HS256_SECRET,
              algorithms: e.AUTH_ALGORITHMS,
              clockSkewSeconds: e.AUTH_CLOCK_SKEW_SECONDS,
              maxTokenAgeSeconds: e.AUTH_MAX_TOKEN_AGE_SECONDS,
              requireAtJwt: e.AUTH_REQUIRE_AT_JWT,
              orgClaim: e.AUTH_ORG_CLAIM,
              scopeClaim: e.AUTH_SCOPE_CLAIM,
              rolesClaim: e.AUTH_ROLES_CLAIM,
            }),
      dpop: Object.freeze({
        required: e.AUTH_REQUIRE_DPOP,
        iatWindowSeconds: e.DPOP_IAT_WINDOW_SECONDS,
        nonce: e.DPOP_NONCE,
        nonceSecret: e.DPOP_NONCE_SECRET,
        proofsPerMinute: e.DPOP_PROOFS_PER_MIN,
      }),
      publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
      failuresPerMinute: e.AUTH_FAILURES_PER_MIN,
      refusalAuditWindowSeconds: e.AUDIT_REFUSAL_WINDOW_SECONDS,
      authorizationServers:
        e.AUTH_AUTHORIZATION_SERVERS.length > 0
          ? e.AUTH_AUTHORIZATION_SERVERS
          : e.AUTH_ISSUER !== undefined
            ? [e.AUTH_ISSUER]
            : [],
    }),
    mcp: Object.freeze({
      allowedOrigins: [...e.MCP_ALLOWED_ORIGINS, ...e.CORS_ORIGINS],
      allowedHosts: e.MCP_ALLOWED_HOSTS,
      sseMaxSessions: e.MCP_SSE_MAX_SESSIONS,
      sseIdleTimeoutMs: e.MCP_SSE_IDLE_TIMEOUT_MS,
    }),
    http: Object.freeze({
      trustProxy: e.TRUST_PROXY,
      corsOrigins: e.CORS_ORIGINS,
      hstsMaxAgeSeconds: e.HSTS_MAX_AGE_SECONDS,
    }),
    residency: Object.freeze({
      region: e.ENGRAM_REGION,
      servedRegions: e.ENGRAM_SERVED_REGIONS.length > 0 ? e.ENGRAM_SERVED_REGIONS : [e.ENGRAM_REGION],
    }),
    auditReads: e.AUDIT_READS,
    rateLimit: Object.freeze({
      enabled: e.RATE_LIMIT_ENABLED,
      perMinute: Object.freeze({
        read: e.RATE_LIMIT_READ_PER_MIN,
        write: e.RATE_LIMIT_WRITE_PER_MIN,
        search: e.RATE_LIMIT_SEARCH_PER_MIN,
        admin: e.RATE_LIMIT_ADMIN_PER_MIN,
        import: e.RATE_LIMIT_IMPORT_PER_MIN,
      }),
      burstSeconds: e.RATE_LIMIT_BURST_SECONDS,
    }),
    metricsPublic: e.METRICS_PUBLIC,
    tracing: Object.freeze({
      endpoint:
        e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
        (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined
          ? undefined
          : `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`),
      headers: Object.freeze(otlpHeaders),
      serviceName: e.OTEL_SERVICE_NAME,
      // Everything in development; in production 1 % of new traces unless told otherwise.
      sampleRatio: e.ENGRAM_TRACE_SAMPLE_RATIO ?? e.OTEL_TRACES_SAMPLER_ARG ?? (e.NODE_ENV === 'production' ? 0.01 : 1),
    }),
  });
}

/** `key1=value1,key2=value2` with URL-encoded values (the OTLP exporter convention). */
function parseOtlpHeaders(raw: string | undefined, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (raw ?? '').split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq).trim() : '';
    if (key === '') {
      problems.push('OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs separated by commas');
      continue;
    }
    try {
      out[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      problems.push(`OTEL_EXPORTER_OTLP_HEADERS: the value of ${key} is not URL-encoded`);
    }
  }
  return out;
}

/** Hides passwords in URLs and whole secret values. */
export function redactUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    // libpq also accepts secrets as query parameters.
    for (const k of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(k)) u.searchParams.set(k, '***');
    }
    return u.toString();
  } catch {
    return '***';
  }
}

/** A summary safe to log or print: no secret appears in it. */
export function redactedSummary(config: Config): Record<string, unknown> {
  const store =
    config.store.kind === 'pglite'
      ? { kind: 'pglite', dataDir: config.store.dataDir }
      : {
          kind: 'postgres',
          url: redactUrl(config.store.url),
          adminUrl: redactUrl(config.store.adminUrl),
          systemUrl: redactUrl(config.store.systemUrl),
          poolMax: config.store.poolMax,
          systemPoolMax: config.store.systemPoolMax,
          connectTimeoutMs: config.store.connectTimeoutMs,
          statementTimeoutMs: config.store.statementTimeoutMs,
        };
  return {
    listen: `${config.host}:${config.port}`,
    dataDir: config.dataDir,
    store,
    valkey: config.valkeyUrl === undefined ? 'in-process' : redactUrl(config.valkeyUrl),
    embedding: {
      provider: config.embedding.provider,
      model: config.embedding.model,
      ...(config.embedding.provider === 'builtin' ? { dimension: config.embedding.dimension } : {}),
      ...(config.embedding.modelDir === undefined ? {} : { modelDir: config.embedding.modelDir }),
      ...(config.embedding.provider === 'openai'
        ? {
            baseUrl: redactUrl(config.embedding.openaiBaseUrl),
            apiKey: config.embedding.openaiApiKey === undefined ? 'unset' : '***',
          }
        : {}),
    },
    limits: config.limits,
    search: {
      vectorWeight: config.search.vectorWeight ?? 'by embedder',
      contextWeight: config.search.contextWeight,
      graphWeight: config.search.graphWeight,
      neighbourWindowSeconds: config.search.neighbourWindowSeconds,
      reranker:
        config.search.reranker === undefined
          ? 'off'
          : {
              baseUrl: redactUrl(config.search.reranker.baseUrl),
              api: config.search.reranker.api,
              model: config.search.reranker.model,
              apiKey: config.search.reranker.apiKey === undefined ? 'unset' : '***',
            },
    },
    code: config.code,
    auth: {
      apiKeys: true,
      jwt:
        config.auth.jwt === undefined
          ? 'off'
          : {
              issuer: config.auth.jwt.issuer,
              audiences: config.auth.jwt.audiences,
              keys: config.auth.jwt.jwksUrl ?? (config.auth.jwt.jwks !== undefined ? 'inline JWKS' : 'HS256 secret'),
              algorithms: config.auth.jwt.algorithms,
            },
      dpop: { required: config.auth.dpop.required, nonce: config.auth.dpop.nonce },
    },
    cors: config.http.corsOrigins.length === 0 ? 'closed' : config.http.corsOrigins,
    residency: config.residency,
    tracing:
      config.tracing.endpoint === undefined
        ? 'off'
        : {
            endpoint: redactUrl(config.tracing.endpoint),
            headers: Object.keys(config.tracing.headers),
            serviceName: config.tracing.serviceName,
            sampleRatio: config.tracing.sampleRatio,
          },
  };
}
