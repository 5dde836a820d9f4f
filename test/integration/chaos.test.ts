import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/main.ts';
import { EmbedderProcess, missingForChaos, PrivatePostgres, PrivateValkey } from '../helpers/chaos-services.ts';

/**
 * Chaos with real processes: Engram under a steady load of writes and
 * searches while its own private Valkey, embedder and PostgreSQL are killed
 * and brought back, one after the other. It checks health states, circuit
 * transitions, degraded answers, that nothing answers 500, that every
 * acknowledged write survives, and that everything recovers without a
 * restart. Private services on free ports: the shared ones are never touched.
 * Only in the `integration` project (vitest.config.ts keeps it out of `unit`).
 */

const missing = missingForChaos();
if (missing.length > 0) {
  console.log(`chaos.test: skipped: missing ${missing.join(', ')}`);
}

const DIMENSION = 64;
const CLIENTS = 8;

interface Outcome {
  readonly phase: string;
  readonly route: string;
  readonly status: number;
  readonly code?: string;
  readonly retryAfter?: string;
}

/** Polls `check` until it returns a truthy value (bounded; no timing assertions). */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 45_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(
    `${what}: not within ${timeoutMs} ms${last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})`}`,
  );
}

/** `samples` in order, possibly with others in between. */
const inOrder = (seen: readonly string[], samples: readonly string[]) => {
  let i = 0;
  for (const s of seen) if (s === samples[i]) i += 1;
  return i === samples.length;
};

describe.skipIf(missing.length > 0)('chaos: Valkey, embedder and PostgreSQL die under load', () => {
  let postgres: PrivatePostgres;
  let valkey: PrivateValkey;
  let embedder: EmbedderProcess;
  let server: RunningServer;
  let dataDir: string;
  let key: string;
  let phase = 'baseline';
  const outcomes: Outcome[] = [];
  const fetchFailures: string[] = [];
  const acked = new Map<string, string>();
  const transitions: Record<string, string[]> = { store: [], valkey: [], embedder: [] };
  let stopLoad = false;
  let load: Promise<void> = Promise.resolve();

  const api = async (method: string, url: string, body?: unknown, record = true) => {
    const res = await fetch(`${server.url}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    // Untyped, like inject().json(): asserting on it is the point.
    const json = text === '' ? undefined : JSON.parse(text);
    if (record) {
      const code = (json?.error as { code?: string } | undefined)?.code;
      const retryAfter = res.headers.get('retry-after') ?? undefined;
      outcomes.push({
        phase,
        route: `${method} ${url.replace(/[0-9a-f-]{36}/, ':id')}`,
        status: res.status,
        ...(code === undefined ? {} : { code }),
        ...(retryAfter === undefined ? {} : { retryAfter }),
      });
    }
    return { status: res.status, headers: res.headers, body: json };
  };
  const get = (url: string) => fetch(`${server.url}${url}`, { signal: AbortSignal.timeout(20_000) });
  const deps = async () =>
    (await (await get('/health/deps')).json()) as { status: string; deps: Record<string, string> };
  const detail = async () => (await api('GET', '/health/deps/detail', undefined, false)).body;
  const gauge = async (name: string, labels: string) => {
    const text = await (await get('/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? undefined : Number(line.split(' ').pop());
  };
  const inPhase = (p: string) => outcomes.filter((o) => o.phase === p);

  /** One client: write a memory, search for something, repeat; every acknowledged id is kept. */
  const client = async (n: number) => {
    for (let i = 0; !stopLoad; i++) {
      try {
        const content = `chaos client ${n} write ${i} token${randomUUID().slice(0, 8)}`;
        const w = await api('POST', '/v1/memories', { content, scope: { agent: `chaos-${n}` } });
        if ((w.status === 201 || w.status === 200) && typeof w.body?.id === 'string') acked.set(w.body.id, content);
        await api('POST', '/v1/memories/search', { query: `client ${n} write ${randomUUID().slice(0, 6)}`, limit: 5 });
      } catch (e) {
        fetchFailures.push(`${phase}: ${(e as Error).message}`);
      }
      await sleep(20);
    }
  };

  beforeAll(async () => {
    [postgres, valkey, embedder] = await Promise.all([
      PrivatePostgres.create(),
      PrivateValkey.create(),
      EmbedderProcess.create(DIMENSION),
    ]);
    dataDir = mkdtempSync(path.join(tmpdir(), 'engram-chaos-'));
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      ENGRAM_DATA_DIR: dataDir,
      DATABASE_URL: postgres.url,
      DATABASE_CONNECT_TIMEOUT_MS: '2000',
      VALKEY_URL: valkey.url,
      EMBEDDER: 'openai',
      OPENAI_BASE_URL: embedder.baseUrl,
      EMBEDDING_MODEL: 'fake-embed',
      EMBEDDING_DIMENSION: String(DIMENSION),
      EMBEDDING_TIMEOUT_MS: '2000',
      EMBEDDING_RETRIES: '0',
      EMBEDDING_BREAKER_THRESHOLD: '3',
      EMBEDDING_BREAKER_HALF_OPEN_MS: '1000',
      STORE_BREAKER_THRESHOLD: '3',
      STORE_BREAKER_HALF_OPEN_MS: '1000',
      VALKEY_BREAKER_THRESHOLD: '3',
      VALKEY_BREAKER_HALF_OPEN_MS: '1000',
      REEMBED_INTERVAL_MS: '1000',
      JOBS_POLL_MS: '250',
      JOBS_BACKOFF_BASE_MS: '250',
      JOBS_BACKOFF_MAX_MS: '2000',
      METRICS_PUBLIC: 'true',
      // Limits on, so the rate limiter's Valkey fallback is exercised; quotas far above the load.
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_READ_PER_MIN: '1000000',
      RATE_LIMIT_WRITE_PER_MIN: '1000000',
      RATE_LIMIT_SEARCH_PER_MIN: '1000000',
      RATE_LIMIT_ADMIN_PER_MIN: '1000000',
    });
    server = await startServer(config, pino({ level: 'silent' }));
    key = readFileSync(path.join(dataDir, 'admin.key'), 'utf8').trim();
    const { engram } = server;
    engram.database.breaker?.onTransition((to) => transitions.store?.push(to));
    engram.valkeyPolicy?.onTransition((to) => transitions.valkey?.push(to));
    engram.embedder.onBreakerTransition((to) => transitions.embedder?.push(to));
    load = Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n))).then(() => undefined);
  });

  afterAll(async () => {
    stopLoad = true;
    await load;
    await server?.stop().catch(() => undefined);
    await Promise.all([postgres?.destroy(), valkey?.destroy(), embedder?.destroy()]);
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves the baseline with every dependency up', async () => {
    await eventually('some acknowledged writes', async () => acked.size >= CLIENTS);
    const d = await deps();
    expect(d).toEqual({ status: 'up', deps: { store: 'up', valkey: 'up', embedder: 'up' } });
    const body = await detail();
    expect(body?.deps.store.details).toMatchObject({ breaker: 'closed' });
    expect(body?.deps.valkey.details).toMatchObject({ breaker: 'closed' });
    for (const dep of ['store', 'valkey', 'embedder']) {
      expect(await gauge('engram_dependency_breaker_state', `dependency="${dep}"`)).toBe(0);
    }
  });

  it('keeps answering 2xx with Valkey killed, reporting it down and the service degraded', async () => {
    phase = 'valkey-down';
    await valkey.kill();
    await eventually('/health/deps shows valkey down', async () => {
      const d = await deps();
      return d.deps.valkey === 'down' && d.status === 'degraded';
    });
    await eventually('the Valkey circuit opens', async () => server.engram.valkeyPolicy?.state === 'open');
    const writesBefore = inPhase('valkey-down').filter((o) => o.status === 201).length;
    await eventually(
      'writes go on while Valkey is down',
      async () => inPhase('valkey-down').filter((o) => o.status === 201).length > writesBefore + CLIENTS,
    );
    const failed = inPhase('valkey-down').filter((o) => o.status >= 300);
    expect(failed).toEqual([]);
    const body = await detail();
    expect(body?.deps.valkey).toMatchObject({ status: 'down', details: { breaker: expect.any(String) } });
    const text = await (await get('/metrics')).text();
    expect(Number(/^engram_rate_limit_fallbacks_total (\S+)/m.exec(text)?.[1])).toBeGreaterThan(0);
  });

  it('recovers Valkey without a restart once it is back', async () => {
    phase = 'valkey-back';
    await valkey.start();
    await eventually('/health/deps shows valkey up', async () => (await deps()).deps.valkey === 'up', 60_000);
    await eventually('the Valkey circuit closes', async () => server.engram.valkeyPolicy?.state === 'closed');
    expect(inOrder(transitions.valkey ?? [], ['open', 'half-open', 'closed'])).toBe(true);
    expect(await gauge('engram_dependency_breaker_transitions_total', 'dependency="valkey",to="open"')).toBeGreaterThan(
      0,
    );
  });

  it('stores writes and degrades search to lexical with the embedder killed', async () => {
    phase = 'embedder-down';
    await embedder.kill();
    await eventually('the embedder circuit opens', async () => {
      const body = await detail();
      return body?.deps.embedder.details.breaker === 'open' && body.deps.embedder.status === 'down';
    });
    const w = await api('POST', '/v1/memories', { content: `written while the embedder is down ${randomUUID()}` });
    expect(w.status).toBe(201);
    acked.set(w.body?.id as string, w.body?.content as string);
    const s = await api('POST', '/v1/memories/search', { query: `embedder down ${randomUUID()}` });
    expect(s.status).toBe(200);
    expect(s.body?.degraded).toEqual(['vector']);
    expect(s.headers.get('engram-degraded')).toBe('vector');
    const vectorOnly = await api('POST', '/v1/memories/search', { query: `vector ${randomUUID()}`, mode: 'vector' });
    expect(vectorOnly.status).toBe(503);
    expect(vectorOnly.body?.error.code).toBe('EMBEDDER_UNAVAILABLE');
    expect((await deps()).status).toBe('degraded');
  });

  it('closes the embedder circuit and searches by vector again once it is back', async () => {
    phase = 'embedder-back';
    await embedder.start();
    await eventually('hybrid search is no longer degraded', async () => {
      const s = await api('POST', '/v1/memories/search', { query: `embedder back ${randomUUID()}` });
      return s.status === 200 && (s.body?.degraded as string[]).length === 0;
    });
    await eventually('the embedder circuit closes', async () => server.engram.embedder.breakerState === 'closed');
    const v = await api('POST', '/v1/memories/search', { query: `vector again ${randomUUID()}`, mode: 'vector' });
    expect(v.status).toBe(200);
    expect(inOrder(transitions.embedder ?? [], ['open', 'half-open', 'closed'])).toBe(true);
  });

  it('fails fast with 503 UNAVAILABLE and Retry-After while PostgreSQL is stopped, staying live', async () => {
    phase = 'postgres-down';
    await postgres.stop();
    await eventually('/health/ready answers 503', async () => (await get('/health/ready')).status === 503);
    expect((await get('/health/live')).status).toBe(200);
    await eventually('the store circuit opens', async () => server.engram.database.breaker?.state === 'open');
    expect(await gauge('engram_dependency_breaker_state', 'dependency="store"')).toBe(2);
    // /health/deps reuses a probe for a few seconds.
    await eventually('/health/deps answers 503 with the store down', async () => {
      const d = await get('/health/deps');
      return d.status === 503 && ((await d.json()) as { deps: Record<string, string> }).deps.store === 'down';
    });

    const w = await eventually('a write refused by the open circuit', async () => {
      const r = await api('POST', '/v1/memories', { content: `refused ${randomUUID()}` });
      return r.status === 503 && r.headers.get('retry-after') !== null ? r : undefined;
    });
    expect(w.body?.error.code).toBe('UNAVAILABLE');
    expect(Number(w.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const errorsWhileDown = inPhase('postgres-down').filter((o) => o.status >= 300);
    expect(errorsWhileDown.length).toBeGreaterThan(0);
    expect(errorsWhileDown.filter((o) => o.status !== 503 || o.code !== 'UNAVAILABLE')).toEqual([]);
  });

  it('is ready again without a restart once PostgreSQL is back', async () => {
    phase = 'postgres-back';
    await postgres.start();
    await eventually('/health/ready answers 200', async () => (await get('/health/ready')).status === 200, 60_000);
    await eventually('the store circuit closes', async () => server.engram.database.breaker?.state === 'closed');
    await eventually('writes succeed again', async () => inPhase('postgres-back').some((o) => o.status === 201));
    expect(inOrder(transitions.store ?? [], ['open', 'half-open', 'closed'])).toBe(true);
    expect(await gauge('engram_dependency_breaker_state', 'dependency="store"')).toBe(0);
    await eventually('/health/deps is up again', async () => (await deps()).status === 'up');
  });

  it('answered no request with a 500 and lost no connection to Engram', async () => {
    stopLoad = true;
    await load;
    phase = 'done';
    const summary: Record<string, Record<string, number>> = {};
    for (const o of outcomes) {
      const byStatus = (summary[o.phase] ??= {});
      const k = `${o.status}${o.code === undefined ? '' : ` ${o.code}`}`;
      byStatus[k] = (byStatus[k] ?? 0) + 1;
    }
    // The run's shape, for whoever reads a CI log.
    console.log(`chaos.test: ${acked.size} acknowledged writes; answers by phase: ${JSON.stringify(summary)}`);
    expect(outcomes.length).toBeGreaterThan(100);
    expect(outcomes.filter((o) => o.status >= 500 && o.status !== 503)).toEqual([]);
    expect(fetchFailures).toEqual([]);
  });

  it('lost no acknowledged write: each is readable and, eventually, vector-searchable', async () => {
    const ids = [...acked.keys()];
    expect(ids.length).toBeGreaterThan(CLIENTS);
    for (let i = 0; i < ids.length; i += 16) {
      const batch = await Promise.all(ids.slice(i, i + 16).map((id) => api('GET', `/v1/memories/${id}`)));
      expect(batch.map((r) => r.status)).toEqual(batch.map(() => 200));
    }
    const db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    try {
      const stored = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM memories WHERE id = ANY($1::uuid[])',
        [ids],
      );
      expect(stored.rows[0]?.n).toBe(ids.length);
      await eventually(
        'every acknowledged write has its vector',
        async () => {
          const r = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM memories m WHERE m.id = ANY($1::uuid[])
               AND NOT EXISTS (SELECT 1 FROM memory_embeddings e WHERE e.memory_id = m.id AND e.model = 'fake-embed')`,
            [ids],
          );
          return r.rows[0]?.n === 0;
        },
        60_000,
      );
    } finally {
      await db.end();
    }
    // A sample through the API: searching a memory's own content by vector finds it.
    for (const id of ids.filter((_, i) => i % Math.ceil(ids.length / 10) === 0)) {
      const r = await api('POST', '/v1/memories/search', { query: acked.get(id), mode: 'vector', limit: 5 });
      expect(r.status).toBe(200);
      expect((r.body?.results as Array<{ memory: { id: string } }>).map((h) => h.memory.id)).toContain(id);
    }
  });
});
