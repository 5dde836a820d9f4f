import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { appDeps } from '../../src/main.ts';
import { spawnServer, type ServerProcess } from '../helpers/server-process.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  type TestDatabase,
  type TestEngram,
  type TestOrg,
} from '../helpers/test-engram.ts';

/**
 * Abuse limits (docs/security.md, "Abuse limits and authentication
 * hardening"): what an unauthenticated or hostile caller can make the server
 * do, and what it costs everyone else.
 */
describe(`failed authentication per client address (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  beforeAll(async () => {
    // Rate limits per org stay off: the failure limit is its own control.
    t = await createTestEngram({ AUTH_FAILURES_PER_MIN: '5' });
    org = await t.makeOrg();
  });
  afterAll(async () => t?.close());

  const get = (remoteAddress: string, authorization: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'GET', url: '/v1/memories', remoteAddress, headers: { authorization, ...headers } });

  it('answers 429 RATE_LIMITED with Retry-After once an address used its failures, before checking any credential', async () => {
    for (let i = 0; i < 5; i++) expect((await get('203.0.113.7', `Bearer egm_wrong${i}`)).statusCode).toBe(401);
    // A valid key from the same address is not even looked at; a forged X-Forwarded-For does not help (TRUST_PROXY off).
    const refused = await get('203.0.113.7', org.auth.authorization, { 'x-forwarded-for': '198.51.100.1' });
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.json()).toMatchObject({ error: { code: 'RATE_LIMITED', details: { class: 'auth_failure' } } });
    // Other addresses are not affected.
    expect((await get('203.0.113.8', org.auth.authorization)).statusCode).toBe(200);
  });

  it('files refused authentication as one audit entry per source and window, with a count', async () => {
    const chain = t.engram.system.systemAuditChain();
    await t.engram.audit.flushRefusals();
    const before = (await chain.findHead())?.seq ?? 0;
    for (let i = 0; i < 4; i++) await get('192.0.2.44', `Bearer egm_unknown${i}`);
    await get('192.0.2.45', 'Bearer egm_other');
    await t.engram.audit.flushRefusals();
    const entries = await chain.findChain(before, 100);
    expect(entries).toHaveLength(2);
    const bySource = Object.fromEntries(entries.map((e) => [e.ip, e]));
    expect(bySource['192.0.2.44']).toMatchObject({
      orgId: null,
      actorType: 'anonymous',
      action: 'auth.refused',
      outcome: 'failure',
      status: 401,
      details: { count: 4, errorCode: 'UNAUTHENTICATED' },
    });
    expect(bySource['192.0.2.45']?.details).toMatchObject({ count: 1 });
    expect(JSON.stringify(entries)).not.toContain('egm_unknown');
  });
});

describe(`MCP calls charged to their tool's rate class (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram({
      RATE_LIMIT_ENABLED: 'true',
      // A burst of 60 s of the rate: nothing refills noticeably during a test.
      RATE_LIMIT_BURST_SECONDS: '60',
      RATE_LIMIT_WRITE_PER_MIN: '3',
      RATE_LIMIT_IMPORT_PER_MIN: '4',
    });
  });
  afterAll(async () => t?.close());

  const rpc = (auth: { authorization: string }, messages: unknown) =>
    t.app.inject({
      method: 'POST',
      url: '/mcp',
      headers: { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      payload: JSON.stringify(messages),
    });
  const call = (id: number, name: string, args: Record<string, unknown>) => ({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name, arguments: args },
  });
  const codes = (body: unknown) =>
    (body as Array<{ result: { isError?: boolean; _meta?: { 'engram/error'?: { code: string } } } }>).map(
      (m) => m.result._meta?.['engram/error']?.code ?? 'ok',
    );
  const stored = async (org: TestOrg) =>
    (
      (await t.app.inject({ method: 'GET', url: '/v1/memories?limit=100', headers: org.auth })).json() as {
        items: unknown[];
      }
    ).items.length;

  it('charges each remember of a JSON-RPC batch one write token', async () => {
    const org = await t.makeOrg();
    const batch = Array.from({ length: 6 }, (_, i) => call(i + 1, 'remember', { content: `batched write ${i}` }));
    const res = await rpc(org.auth, batch);
    expect(res.statusCode).toBe(200);
    expect(codes(res.json())).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(await stored(org)).toBe(3);
    // The write bucket is empty for REST too: one bucket per org and class, whatever the face.
    const rest = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: org.auth,
      payload: { content: 'one more' },
    });
    expect(rest.statusCode).toBe(429);
  });

  it('charges remember_many one import token per item', async () => {
    const org = await t.makeOrg();
    const items = (n: number) => Array.from({ length: n }, (_, i) => ({ content: `imported ${n}-${i}` }));
    const res = await rpc(org.auth, [
      call(1, 'remember_many', { memories: items(3) }),
      call(2, 'remember_many', { memories: items(2) }),
    ]);
    expect(codes(res.json())).toEqual(['ok', 'RATE_LIMITED']);
    expect(await stored(org)).toBe(3);
  });
});

describe(`bounded client-supplied values (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  beforeAll(async () => {
    t = await createTestEngram({ MEMORY_MAX_METADATA_BYTES: '1024', MEMORY_MAX_METADATA_DEPTH: '4' });
    org = await t.makeOrg();
  });
  afterAll(async () => t?.close());

  const big = { blob: 'x'.repeat(2000) };
  const deep = { a: { b: { c: { d: { e: 1 } } } } };
  const post = (url: string, payload: Record<string, unknown>) =>
    t.app.inject({ method: 'POST', url, headers: org.auth, payload });

  it('refuses metadata above the size or depth cap on create, update and batch, and stores nothing', async () => {
    for (const [metadata, limit] of [
      [big, 'bytes'],
      [deep, 'depth'],
    ] as const) {
      const res = await post('/v1/memories', { content: `too much metadata ${limit}`, metadata });
      expect(res.statusCode, limit).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'metadata', limit } });
    }
    const ok = await post('/v1/memories', { content: 'small metadata', metadata: { a: { b: { c: 1 } } } });
    expect(ok.statusCode).toBe(201);
    const id = ok.json().id as string;
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/memories/${id}`,
      headers: org.auth,
      payload: { metadata: big },
    });
    expect(patched.statusCode).toBe(400);
    expect(patched.json().error.details).toMatchObject({ field: 'metadata', limit: 'bytes', max: 1024 });
    const history = await t.app.inject({ method: 'GET', url: `/v1/memories/${id}/history`, headers: org.auth });
    expect(JSON.stringify(history.json())).not.toContain('xxxx');

    const batch = await post('/v1/memories/batch', {
      items: [{ content: 'fine item' }, { content: 'deep item', metadata: deep }],
    });
    expect(JSON.stringify(batch.json())).toContain('VALIDATION_FAILED');
    const list = await t.app.inject({ method: 'GET', url: '/v1/memories?limit=50', headers: org.auth });
    expect((list.json().items as Array<{ content: string }>).map((m) => m.content).sort()).toEqual([
      'fine item',
      'small metadata',
    ]);
  });

  it('stores a bounded request id for an MCP call whatever JSON-RPC id the client sent', async () => {
    const hugeId = `id-${'9'.repeat(100_000)}`;
    const res = await t.app.inject({
      method: 'POST',
      url: '/mcp',
      headers: { ...org.auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      payload: JSON.stringify({
        jsonrpc: '2.0',
        id: hugeId,
        method: 'tools/call',
        params: { name: 'remember', arguments: { content: 'called with a huge JSON-RPC id' } },
      }),
    });
    expect(res.statusCode).toBe(200);
    const audit = await t.app.inject({ method: 'GET', url: '/v1/audit?action=mcp.remember', headers: org.auth });
    const [entry] = audit.json().items as Array<{ requestId: string }>;
    expect(entry?.requestId.length).toBeLessThanOrEqual(200);
    expect(entry?.requestId).toMatch(/^[\w.:-]+$/);
  });
});

describe(`legacy SSE sessions (${backend})`, () => {
  let t: TestEngram;
  let app: FastifyInstance;
  let url: string;
  let clock = 0;
  beforeAll(async () => {
    t = await createTestEngram({ MCP_SSE_MAX_SESSIONS: '2', MCP_SSE_IDLE_TIMEOUT_MS: '60000' });
    // The same app, with a clock the test moves: idleness without waiting.
    const deps = appDeps(t.engram, t.health);
    if (deps.mcp === undefined) throw new Error('MCP is off');
    app = await buildApp({ ...deps, mcp: { ...deps.mcp, now: () => clock } });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await app?.close();
    await t?.close();
  });

  /** Opens GET /sse and reads up to the endpoint event. */
  const open = async (auth: { authorization: string }) => {
    const abort = new AbortController();
    const res = await fetch(`${url}/sse`, { headers: auth, signal: abort.signal });
    const reader = res.status === 200 ? res.body?.getReader() : undefined;
    let text = '';
    while (res.status === 200 && !text.includes('sessionId=')) {
      const chunk = await reader?.read();
      if (chunk === undefined || chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
    }
    return { res, reader, abort, endpoint: /data: (\/messages\?sessionId=[\w-]+)/.exec(text)?.[1] ?? '' };
  };
  const ping = (endpoint: string, auth: { authorization: string }) =>
    fetch(`${url}${endpoint}`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });

  it('caps open sessions per principal with 429, leaving other principals alone', async () => {
    const [me, other] = [await t.makeOrg(), await t.makeOrg()];
    const first = await open(me.auth);
    const second = await open(me.auth);
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    const third = await open(me.auth);
    expect(third.res.status).toBe(429);
    expect((await third.res.json()) as unknown).toMatchObject({
      error: { code: 'RATE_LIMITED', details: { maxSessions: 2 } },
    });
    const theirs = await open(other.auth);
    expect(theirs.res.status).toBe(200);
    for (const s of [first, second, theirs]) s.abort.abort();
  });

  it('closes a session idle for longer than MCP_SSE_IDLE_TIMEOUT_MS', async () => {
    const me = await t.makeOrg();
    clock = 1_000_000;
    const session = await open(me.auth);
    clock += 59_000;
    expect((await ping(session.endpoint, me.auth)).status).toBe(202);
    clock += 60_001;
    expect((await ping(session.endpoint, me.auth)).status).toBe(404);
    // The stream itself was ended by the server.
    let done = false;
    while (!done) done = (await session.reader?.read())?.done ?? true;
    expect(done).toBe(true);
  });
});

describe(`repositories per org (${backend})`, () => {
  const MAX_REPOS = 3;
  let t: TestEngram;
  let top: string;
  beforeAll(async () => {
    top = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-repo-quota-')));
    t = await createTestEngram({ CODE_ALLOWED_ROOTS: top, CODE_MAX_REPOS_PER_ORG: String(MAX_REPOS) });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(top, { recursive: true, force: true });
  });

  /** Registers a fresh directory of the org's own (nothing is indexed: no test here runs the queue). */
  const register = (org: TestOrg, name: string) => {
    const dir = path.join(top, org.slug, name);
    mkdirSync(dir, { recursive: true });
    return t.app.inject({ method: 'POST', url: '/v1/repos', headers: org.auth, payload: { path: dir } });
  };
  const repoIds = async (org: TestOrg): Promise<string[]> => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/repos', headers: org.auth });
    return res.json<{ items: Array<{ id: string }> }>().items.map((r) => r.id);
  };

  it('refuses a repository past CODE_MAX_REPOS_PER_ORG with 409 QUOTA_EXCEEDED, and counts only the org’s own', async () => {
    const [a, b] = [await t.makeOrg(), await t.makeOrg()];
    for (let i = 0; i < MAX_REPOS; i++) expect((await register(a, `r${i}`)).statusCode).toBe(202);
    const refused = await register(a, 'one-too-many');
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({
      error: { code: 'QUOTA_EXCEEDED', details: { quota: 'repos', limit: MAX_REPOS, used: MAX_REPOS } },
    });
    expect(refused.json<{ error: { message: string } }>().error.message).toMatch(/CODE_MAX_REPOS_PER_ORG/);
    expect(await repoIds(a)).toHaveLength(MAX_REPOS);
    // Another org's repositories do not count against it, nor its against them.
    expect((await register(b, 'r0')).statusCode).toBe(202);
    // Deleting one frees its place.
    const [first] = await repoIds(a);
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/repos/${first}`, headers: a.auth });
    expect(del.statusCode).toBe(204);
    expect((await register(a, 'one-too-many')).statusCode).toBe(202);
  });

  it('holds the cap when registrations race', async () => {
    const c = await t.makeOrg();
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => register(c, `race${i}`)));
    const statuses = answers.map((r) => r.statusCode).sort();
    expect(statuses).toEqual([202, 202, 202, 409, 409, 409]);
    expect(await repoIds(c)).toHaveLength(MAX_REPOS);
  });
});

describe(`engram serve --no-print-key (${backend})`, () => {
  let db: TestDatabase;
  let server: ServerProcess | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('keeps the bootstrap key out of stdout and names the file that holds it', async () => {
    const env = { ...process.env, ...db.env, LOG_LEVEL: 'info', REEMBED_INTERVAL_MS: '0', PORT: '0' };
    server = await spawnServer(env, 60_000, ['--no-print-key']);
    const keyFile = path.join(db.env.ENGRAM_DATA_DIR ?? '', 'admin.key');
    const key = readFileSync(keyFile, 'utf8').trim();
    expect(key).toMatch(/^egm_/);
    expect(server.output()).not.toContain(key);
    expect(server.output()).toContain(keyFile);
    const me = await fetch(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${key}` } });
    expect(me.status).toBe(200);
  });
});
