/**
 * The load generator of bench:load, run as a child process so autocannon does
 * not share the server's event loop: `connections` keep-alive connections,
 * closed loop, for `durationSeconds`. The requests follow the mix of
 * load-mix.ts (the same the in-process floor calls): a write
 * (`POST /v1/memories`, a corpus memory never written before) with
 * probability `writeRatio`, else a search (`POST /v1/memories/search`, a
 * corpus query). Every answer is recorded with its time, kind, status,
 * latency and, for searches, whether it came back `degraded`.
 *
 * Protocol (IPC): the child sends `{ type: 'hello' }`, the parent a
 * {@link LoadSpec}; the child answers `{ type: 'started', at }` just before
 * the first request and `{ type: 'done', report }` at the end.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { KIND_SEARCH, KIND_WRITE, loadMix, type LoadRun, type LoadSamples, type MixSpec } from './load-mix.ts';

export interface LoadSpec extends MixSpec {
  readonly url: string;
  readonly apiKey: string;
  readonly connections: number;
  readonly durationSeconds: number;
  /** autocannon's per-request timeout (the in-process floor applies the same bound). */
  readonly timeoutSeconds: number;
}

export interface LoadReport extends LoadRun {
  /** autocannon's own summary (latency in whole ms, over 2xx answers). */
  readonly autocannon: {
    readonly requestsSent: number;
    readonly requestsCompleted: number;
    readonly errors: number;
    readonly timeouts: number;
    readonly non2xx: number;
    readonly statusCodeStats: Record<string, { count: number }>;
    readonly latencyMs: Record<string, number>;
    readonly requestsPerSecond: number;
  };
}

export type ClientMessage = { type: 'hello' } | { type: 'started'; at: number } | { type: 'done'; report: LoadReport };

/** The slice of autocannon's untyped API used here. */
type Context = Record<string, unknown>;
interface AcRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (req: AcRequest, context: Context) => AcRequest;
  onResponse?: (status: number, body: string, context: Context) => void;
}
interface AcResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
  latency: Record<string, number>;
  requests: { average: number; sent: number; total: number };
}
interface AcInstance extends PromiseLike<AcResult> {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): this;
  on(event: 'reqError', fn: (e: Error) => void): this;
}
type Autocannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  timeout: number;
  headers: Record<string, string>;
  requests: AcRequest[];
}) => AcInstance;

const now = (): number => performance.timeOrigin + performance.now();

export async function runLoad(spec: LoadSpec, onStart: (at: number) => void): Promise<LoadReport> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const samples: LoadSamples = { at: [], kind: [], status: [], ms: [], degraded: [] };
  const failures: Array<{ at: number; error: string }> = [];
  const next = loadMix(spec);
  // recordBody (onResponse) runs just before autocannon's 'response' event for
  // the same answer, so these carry one answer's facts from the one to the other.
  let lastKind = KIND_SEARCH;
  let lastDegraded = 0;
  const request: AcRequest = {
    setupRequest: (req, context) => {
      const call = next();
      context.kind = call.kind;
      return call.kind === KIND_WRITE
        ? { ...req, method: 'POST', path: '/v1/memories', body: JSON.stringify(call.memory) }
        : { ...req, method: 'POST', path: '/v1/memories/search', body: JSON.stringify(call.search) };
    },
    onResponse: (status, body, context) => {
      lastKind = context.kind === KIND_WRITE ? KIND_WRITE : KIND_SEARCH;
      lastDegraded = 0;
      if (lastKind === KIND_SEARCH && status === 200) {
        const parsed = JSON.parse(body) as { degraded?: unknown[] };
        if ((parsed.degraded?.length ?? 0) > 0) lastDegraded = 1;
      }
    },
  };
  const startedAt = now();
  onStart(startedAt);
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationSeconds,
    timeout: spec.timeoutSeconds,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${spec.apiKey}` },
    requests: [request],
  });
  instance.on('response', (_client, status, _bytes, ms) => {
    samples.at.push(now());
    samples.kind.push(lastKind);
    samples.status.push(status);
    samples.ms.push(ms);
    samples.degraded.push(lastDegraded);
  });
  instance.on('reqError', (e) => {
    failures.push({ at: now(), error: e.message === 'request timed out' ? 'timeout' : e.message });
  });
  const r = await instance;
  return {
    startedAt,
    finishedAt: now(),
    samples,
    failures,
    autocannon: {
      requestsSent: r.requests.sent,
      requestsCompleted: r.requests.total,
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
      statusCodeStats: r.statusCodeStats,
      latencyMs: r.latency,
      requestsPerSecond: r.requests.average,
    },
  };
}

// Run as a child process: wait for the spec, run, report, exit.
if (process.send !== undefined) {
  const send = (m: ClientMessage) => process.send?.(m);
  process.once('message', (spec: LoadSpec) => {
    runLoad(spec, (at) => send({ type: 'started', at })).then(
      // Exit only once the (large) report has been handed to the channel.
      (report) =>
        process.send?.({ type: 'done', report } satisfies ClientMessage, undefined, {}, () => process.disconnect()),
      (e: unknown) => {
        process.stderr.write(`[load-client] ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'hello' });
}
