import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from '../errors.ts';

/**
 * The only reader of the environment. `loadConfig(env)` validates every variable
 * at once, so a bad deployment fails at start naming all of its mistakes, and
 * returns a frozen object that the rest of the app receives as a parameter.
 *
 * Secrets may come from `NAME_FILE` (a path whose content is the value), the
 * convention of Docker/Kubernetes secrets.
 */

const SECRET_VARS = ['DATABASE_URL', 'DATABASE_ADMIN_URL', 'VALKEY_URL', 'OPENAI_API_KEY', 'ENGRAM_API_KEY'] as const;

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
  DATABASE_POOL_MAX: intFrom(10, 1, 500),
  DATABASE_POOL_IDLE_TIMEOUT_MS: intFrom(30_000, 100, 3_600_000),
  DATABASE_CONNECT_TIMEOUT_MS: intFrom(5_000, 100, 120_000),
  DATABASE_STATEMENT_TIMEOUT_MS: intFrom(30_000, 0, 3_600_000),
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
  SEARCH_MAX_QUERY_CHARS: intFrom(2_000, 1, 100_000),
  SEARCH_MAX_LIMIT: intFrom(100, 1, 1000),
  MEMORY_MAX_CONTENT_CHARS: intFrom(100_000, 1, 10_000_000),
  REEMBED_INTERVAL_MS: intFrom(30_000, 0, 86_400_000),
  SHUTDOWN_TIMEOUT_MS: intFrom(10_000, 0, 600_000),
});

export type Env = Readonly<Record<string, string | undefined>>;

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
  readonly limits: {
    readonly bodyBytes: number;
    readonly searchQueryChars: number;
    readonly searchLimit: number;
    readonly memoryContentChars: number;
  };
  readonly reembedIntervalMs: number;
  readonly shutdownTimeoutMs: number;
}

export type StoreConfig =
  | { readonly kind: 'pglite'; readonly dataDir: string }
  | {
      readonly kind: 'postgres';
      readonly url: string;
      readonly adminUrl: string;
      readonly poolMax: number;
      readonly idleTimeoutMs: number;
      readonly connectTimeoutMs: number;
      readonly statementTimeoutMs: number;
    };

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
  if (resolved.DATABASE_ADMIN_URL !== undefined && resolved.DATABASE_URL === undefined) {
    problems.push('DATABASE_ADMIN_URL: only meaningful together with DATABASE_URL');
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
          poolMax: e.DATABASE_POOL_MAX,
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
    limits: Object.freeze({
      bodyBytes: e.BODY_LIMIT_BYTES,
      searchQueryChars: e.SEARCH_MAX_QUERY_CHARS,
      searchLimit: e.SEARCH_MAX_LIMIT,
      memoryContentChars: e.MEMORY_MAX_CONTENT_CHARS,
    }),
    reembedIntervalMs: e.REEMBED_INTERVAL_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  });
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
          poolMax: config.store.poolMax,
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
  };
}
