import { SpanKind, type Tracer } from '@opentelemetry/api';
import { ATTR_DB_OPERATION_NAME, ATTR_DB_SYSTEM_NAME } from '@opentelemetry/semantic-conventions';
import { inSpan } from '../../ops/tracing.ts';
import type { Cache } from '../../ports/cache.ts';
import type { RateLimiter } from '../../ports/rate-limiter.ts';

/** A CLIENT span `valkey <COMMAND>`: the command and how many keys, never a key or a value. */
function command<T>(tracer: Tracer, name: string, keys: number, fn: () => Promise<T>): Promise<T> {
  return inSpan(
    tracer,
    `valkey ${name}`,
    {
      kind: SpanKind.CLIENT,
      attributes: { [ATTR_DB_SYSTEM_NAME]: 'redis', [ATTR_DB_OPERATION_NAME]: name, 'db.operation.batch.size': keys },
    },
    () => fn(),
  );
}

/**
 * The Valkey cache with a span per command. Decorates the port rather than
 * the client, so the adapter stays free of tracing and the span names say
 * what the cache does on the wire.
 */
export function traceCache(cache: Cache, tracer: Tracer): Cache {
  return {
    kind: cache.kind,
    // Empty batches send nothing, so they get no span.
    getMany: (keys) =>
      keys.length === 0 ? cache.getMany(keys) : command(tracer, 'MGET', keys.length, () => cache.getMany(keys)),
    setMany: (entries, ttl) =>
      entries.length === 0
        ? cache.setMany(entries, ttl)
        : command(tracer, 'SET', entries.length, () => cache.setMany(entries, ttl)),
    setIfAbsent: (key, value, ttl) => command(tracer, 'SET NX', 1, () => cache.setIfAbsent(key, value, ttl)),
    delete: (key) => command(tracer, 'DEL', 1, () => cache.delete(key)),
    ping: () => command(tracer, 'PING', 0, () => cache.ping()),
    close: () => cache.close(),
  };
}

/** The Valkey rate limiter with a span per take (one EVALSHA of the token-bucket script). */
export function traceRateLimiter(limiter: RateLimiter, tracer: Tracer): RateLimiter {
  return {
    kind: limiter.kind,
    take: (key, bucket, cost) => command(tracer, 'EVALSHA', 1, () => limiter.take(key, bucket, cost)),
    close: () => limiter.close(),
  };
}
