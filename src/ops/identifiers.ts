import { createHash } from 'node:crypto';

const SAFE_ID_RE = /^[A-Za-z0-9._:-]+$/;

/**
 * A client-supplied identifier (a JSON-RPC id, a header value) made safe to
 * store and log: kept as is when it is short and plain, else replaced by
 * `sha256:` and the first 32 hex digits of its hash — still stable (the same
 * id maps to the same value, so log lines can be joined), never unbounded.
 */
export function boundedId(raw: string, maxLength = 64): string {
  if (raw.length > 0 && raw.length <= maxLength && SAFE_ID_RE.test(raw)) return raw;
  return `sha256:${createHash('sha256').update(raw).digest('hex').slice(0, 32)}`;
}
