import { performance } from 'node:perf_hooks';
import type { RequestContext } from '../../src/domain/tenancy/tenancy.types.ts';
import { isAppError } from '../../src/errors.ts';
import type { Engram } from '../../src/main.ts';
import { KIND_WRITE, loadMix, type LoadRun, type LoadSamples, type MixSpec } from './load-mix.ts';

/**
 * The in-process floor of bench:load: the HTTP load generator's mix
 * (load-mix.ts), called straight on the services that back the routes —
 * `memories.remember` for `POST /v1/memories`, `search.search` for
 * `POST /v1/memories/search`, with the request context the API key resolves
 * to — by `workers` async callers in a closed loop, one per HTTP connection.
 * No HTTP, no authentication, no JSON, no audit entry: what remains is the
 * engine (store, cache, embedder calls) at the same concurrency.
 */

export interface InProcessSpec extends MixSpec {
  /** Concurrent callers, each starting its next call when the last returns. */
  readonly workers: number;
  readonly durationSeconds: number;
  /** A call slower than this counts as a timeout, as autocannon counts a request. */
  readonly timeoutSeconds: number;
}

export interface InProcessReport extends LoadRun {
  /** Calls that threw within the window, by `AppError` code (else the error's name); status 0 in the samples. */
  readonly errorsByCode: Record<string, number>;
  /** Calls still running when the window closed; they are not counted, as autocannon drops them. */
  readonly inFlightAtEnd: number;
  /** Milliseconds after the window spent waiting for them, so the next phase starts on an idle server. */
  readonly drainMs: number;
}

const now = (): number => performance.timeOrigin + performance.now();

export async function runInProcess(
  engram: Pick<Engram, 'memories' | 'search'>,
  ctx: RequestContext,
  spec: InProcessSpec,
): Promise<InProcessReport> {
  const next = loadMix(spec);
  const samples: LoadSamples = { at: [], kind: [], status: [], ms: [], degraded: [] };
  const failures: Array<{ at: number; error: string }> = [];
  const errorsByCode: Record<string, number> = {};
  const timeoutMs = spec.timeoutSeconds * 1000;
  let calls = 0;
  let inFlight = 0;

  const startedAt = now();
  const deadline = startedAt + spec.durationSeconds * 1000;
  const worker = async () => {
    while (now() < deadline) {
      const call = next();
      // Each HTTP request gets its own id; so does each call.
      const callCtx: RequestContext = { ...ctx, requestId: `bench-in-process-${calls++}` };
      let status = 0;
      let degraded = 0;
      let error: string | undefined;
      const t0 = performance.now();
      inFlight += 1;
      try {
        if (call.kind === KIND_WRITE) {
          const r = await engram.memories.remember(callCtx, call.memory);
          status = r.created ? 201 : 200;
        } else {
          // The route's call for a body without scope or filters.
          const r = await engram.search.search(callCtx, { ...call.search, filter: { scope: undefined } });
          status = 200;
          degraded = r.degraded.length > 0 ? 1 : 0;
        }
      } catch (e) {
        error = isAppError(e) ? e.code : e instanceof Error ? e.name : 'unknown';
      } finally {
        inFlight -= 1;
      }
      const ms = performance.now() - t0;
      const at = now();
      if (ms > timeoutMs) {
        const timedOutAt = at - ms + timeoutMs;
        if (timedOutAt < deadline) failures.push({ at: timedOutAt, error: 'timeout' });
        continue;
      }
      if (at >= deadline) continue;
      if (error !== undefined) errorsByCode[error] = (errorsByCode[error] ?? 0) + 1;
      samples.at.push(at);
      samples.kind.push(call.kind);
      samples.status.push(status);
      samples.ms.push(ms);
      samples.degraded.push(degraded);
    }
  };
  const done = Promise.all(Array.from({ length: spec.workers }, worker));
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - now())));
  const inFlightAtEnd = inFlight;
  // Bounded like the load generator's requests: a call hung past the timeout is given up on.
  let bound: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((resolve) => (bound = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(bound);
  return {
    startedAt,
    finishedAt: deadline,
    samples,
    failures,
    errorsByCode,
    inFlightAtEnd,
    drainMs: Math.max(0, now() - deadline),
  };
}
