import { AppError, errors } from '../../errors.ts';

const codeOf = (e: unknown): string => (typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : '');
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : '');

/** Socket-level errno codes: the server cannot be reached or dropped the connection. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * True for connection-level failures — the server is unreachable, shutting
 * down, or dropped the connection (node-postgres has no code for the last:
 * "Connection terminated unexpectedly"). These open the store's circuit
 * breaker; constraint violations, bad input and other SQL errors never do.
 */
export function isConnectionFailure(e: unknown): boolean {
  const code = codeOf(e);
  if (NETWORK_CODES.has(code)) return true;
  // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now; class 08: connection exception.
  if (code === '57P01' || code === '57P02' || code === '57P03' || code.startsWith('08')) return true;
  const message = messageOf(e);
  // "Client has encountered a connection error and is not queryable", "Client was closed and is not queryable".
  return /^Connection terminated/.test(message) || message.includes('is not queryable');
}

/** node-postgres' pool gave up waiting for a free client: the pool is exhausted, the server may be fine. */
export const isPoolTimeout = (e: unknown): boolean => messageOf(e) === 'timeout exceeded when trying to connect';

/** Translates driver errors (node-postgres or PGlite) into AppErrors at the storage boundary. */
export function translateDbError(e: unknown): unknown {
  if (e instanceof AppError) return e;
  if (isConnectionFailure(e) || isPoolTimeout(e)) return errors.unavailable('The database', e);
  const code = codeOf(e);
  switch (code) {
    case '23505':
      return errors.conflict('A record with the same unique key already exists', {
        constraint: (e as { constraint?: string }).constraint,
      });
    case '57014':
      return errors.timeout('The database query', e);
    case '22P02':
    case '22007':
    case '22008':
      return errors.validation('A value has an invalid format for the database');
    case '53300':
      return errors.unavailable('The database', e);
    default:
      return e;
  }
}

export async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translateDbError(e);
  }
}
