import { tracingChannel } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';

/**
 * The route handlers running in this process, counted from Fastify's own
 * `fastify.request.handler` tracing channel (start, then end for a sync
 * handler or asyncEnd for an async one). The load generator stops at its
 * deadline by closing its sockets, and the server finishes those requests
 * without answering — no `onResponse`, no request counter — so this is how a
 * benchmark that runs the server in its own process knows when it is idle.
 */
export interface HandlerTracker {
  readonly inFlight: number;
  /**
   * Resolves once no handler has run for `quietMs` (a request still in the
   * auth hooks starts its handler within that), or after `boundMs`; true when idle.
   */
  idle(quietMs: number, boundMs: number): Promise<boolean>;
  close(): void;
}

interface Store {
  readonly async?: boolean;
}

export function trackHandlers(): HandlerTracker {
  const channel = tracingChannel<string, Store>('fastify.request.handler');
  let inFlight = 0;
  let lastEvent = performance.now();
  const touch = (delta: number) => {
    inFlight += delta;
    lastEvent = performance.now();
  };
  const subscribers = {
    start: () => touch(1),
    end: (store: Store) => {
      if (store.async !== true) touch(-1);
    },
    asyncStart: () => undefined,
    asyncEnd: () => touch(-1),
    error: () => undefined,
  };
  channel.subscribe(subscribers);
  return {
    get inFlight() {
      return inFlight;
    },
    idle: async (quietMs, boundMs) => {
      const until = performance.now() + boundMs;
      for (;;) {
        const t = performance.now();
        if (inFlight <= 0 && t - lastEvent >= quietMs) return true;
        if (t >= until) return false;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    close: () => channel.unsubscribe(subscribers),
  };
}
