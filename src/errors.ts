/**
 * One error type for the whole app. The domain throws `AppError`s made by the
 * factories below; `http/` maps codes to statuses and `mcp/` to tool errors.
 * `message` is always safe to show a client; internals go in `cause`.
 */
export type ErrorCode =
  | 'VALIDATION_FAILED'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'PATH_NOT_ALLOWED'
  | 'URL_NOT_ALLOWED'
  | 'RESIDENCY_VIOLATION'
  | 'NOT_FOUND'
  | 'MEMORY_NOT_FOUND'
  | 'API_KEY_NOT_FOUND'
  | 'ORG_NOT_FOUND'
  | 'ENTITY_NOT_FOUND'
  | 'CONFLICT'
  | 'QUOTA_EXCEEDED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'EMBEDDING_DIMENSION_MISMATCH'
  | 'EMBEDDER_UNAVAILABLE'
  | 'RERANKER_UNAVAILABLE'
  | 'TIMEOUT'
  | 'UNAVAILABLE'
  | 'STORE_LOCKED'
  | 'CONFIG_INVALID'
  | 'MIGRATION_FAILED'
  | 'RATE_LIMITED'
  | 'INTERNAL';

export interface AppErrorOptions {
  details?: unknown;
  cause?: unknown;
  /** False when trying again cannot succeed: a background job failing with it is dead at once. */
  retryable?: boolean;
}

export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: ErrorCode;
  readonly details: unknown;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
    this.retryable = options.retryable ?? true;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

export const errors = {
  validation: (message: string, details?: unknown) => new AppError('VALIDATION_FAILED', message, { details }),
  unauthenticated: (message = 'A valid API key is required') => new AppError('UNAUTHENTICATED', message),
  forbidden: (message = 'Not allowed') => new AppError('FORBIDDEN', message),
  /**
   * A local path the org may not register or index. One answer for every
   * reason — outside the org's directories, missing, not a directory, another
   * org's — so the answer says nothing about other orgs' files.
   */
  pathNotAllowed: () =>
    new AppError(
      'PATH_NOT_ALLOWED',
      'The path is not a directory this org may register: it must be an existing directory under <root>/<org slug>/ for one of the server’s CODE_ALLOWED_ROOTS, or under a directory the operator gave the org (CODE_ORG_DIRS)',
    ),
  notFound: (kind: 'memory' | 'api key' | 'org' | 'job' | 'repo' | 'resource', id: string) =>
    new AppError(
      kind === 'memory'
        ? 'MEMORY_NOT_FOUND'
        : kind === 'api key'
          ? 'API_KEY_NOT_FOUND'
          : kind === 'org'
            ? 'ORG_NOT_FOUND'
            : 'NOT_FOUND',
      `No ${kind} with id ${id}`,
      { details: { id } },
    ),
  /** A knowledge-graph entity, by name; the message is the official MCP memory server's. */
  entityNotFound: (name: string) =>
    new AppError('ENTITY_NOT_FOUND', `Entity with name ${name} not found`, { details: { name } }),
  conflict: (message: string, details?: unknown) => new AppError('CONFLICT', message, { details }),
  /**
   * The org already holds as many of something as the server allows (its
   * repositories): refused until it removes one, so not worth retrying.
   */
  quotaExceeded: (quota: 'repos' | 'org_bytes', limit: number, used: number, message: string) =>
    new AppError('QUOTA_EXCEEDED', message, { details: { quota, limit, used }, retryable: false }),
  dimensionMismatch: (model: string, expected: number, got: number) =>
    new AppError(
      'EMBEDDING_DIMENSION_MISMATCH',
      `Model ${model} is registered with dimension ${expected} but produced ${got}; re-embed or register a new model name`,
      { details: { model, expected, got } },
    ),
  embedderUnavailable: (cause?: unknown) =>
    new AppError('EMBEDDER_UNAVAILABLE', 'The embedding service is unavailable', { cause }),
  rerankerUnavailable: (cause?: unknown) =>
    new AppError('RERANKER_UNAVAILABLE', 'The reranking service is unavailable', { cause }),
  timeout: (what: string, cause?: unknown) => new AppError('TIMEOUT', `${what} timed out`, { cause }),
  unavailable: (what: string, cause?: unknown) => new AppError('UNAVAILABLE', `${what} is unavailable`, { cause }),
  internal: (cause?: unknown) => new AppError('INTERNAL', 'Internal error', { cause }),
  /** Input past a server limit that a retry would meet again (a repository too large to index). */
  limitExceeded: (message: string, details?: unknown) =>
    new AppError('PAYLOAD_TOO_LARGE', message, { details, retryable: false }),
};
