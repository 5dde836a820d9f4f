import Fastify, { type FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaService } from '../../src/domain/tenancy/quota.service.ts';
import type { RateClass } from '../../src/domain/tenancy/quota.types.ts';
import { ALL_SCOPES, type RequestContext } from '../../src/domain/tenancy/tenancy.types.ts';
import { isAppError } from '../../src/errors.ts';
import { STATUS_BY_CODE } from '../../src/http/error-status.ts';
import { installRateLimit } from '../../src/http/plugins/rate-limit.ts';
import '../../src/http/types.ts';
import type { RateLimiter } from '../../src/ports/rate-limiter.ts';
import { LocalRateLimiter } from '../../src/storage/local/local-rate-limiter.ts';
import { ValkeyRateLimiter } from '../../src/storage/valkey/valkey-rate-limiter.ts';
import { backend, createTestEngram, type TestEngram } from '../helpers/test-engram.ts';

/**
 * The rate-limit plugin on a small Fastify app: a stand-in auth hook (the org
 * comes from `x-org`), the plugin, an error handler with the app's error shape,
 * and one route per rate class. Limiters and the quota store are real.
 */
const valkeyUrl = process.env.VALKEY_URL;
const runPrefix = `engram-test:rl-http:${randomUUID()}:`;

interface Variant {
  readonly name: string;
  readonly create: () => Promise<RateLimiter>;
}
const variants: Variant[] = [{ name: LocalRateLimiter.name, create: () => Promise.resolve(new LocalRateLimiter()) }];
if (valkeyUrl !== undefined && valkeyUrl !== '') {
  variants.push({
    name: ValkeyRateLimiter.name,
    create: async () => {
      const l = new ValkeyRateLimiter(valkeyUrl, { keyPrefix: runPrefix, commandTimeoutMs: 2_000 });
      await l.connect();
      return l;
    },
  });
}

// One request per minute sustained, with a burst of three: nothing refills during a test.
const DEFAULTS = { read: 1, write: 1, search: 1, admin: 1, import: 1 };
const BURST_SECONDS = 180;

const ctxFor = (orgId: string): RequestContext => ({
  orgId,
  actor: { type: 'api_key', id: randomUUID() },
  roles: [],
  scopes: new Set(ALL_SCOPES),
  authMethod: 'api_key',
  requestId: 'test',
});

async function limitedApp(deps: Parameters<typeof installRateLimit>[1]): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.decorateRequest('ctx', undefined);
  app.addHook('onRequest', async (req) => {
    const org = req.headers['x-org'];
    if (typeof org === 'string' && req.routeOptions.config.public !== true) req.ctx = ctxFor(org);
  });
  installRateLimit(app, deps);
  // The shape of buildApp's handler for an AppError below 500.
  app.setErrorHandler((err, req, reply) => {
    if (!isAppError(err)) return reply.code(500).send({ error: { code: 'INTERNAL' } });
    return reply.code(STATUS_BY_CODE[err.code]).send({
      error: { code: err.code, message: err.message, requestId: req.id, details: err.details },
    });
  });
  const ok = async () => ({ ok: true });
  app.get('/v1/memories', { config: { scope: 'memories:read' } }, ok);
  app.post('/v1/memories', { config: { scope: 'memories:write' } }, ok);
  app.post('/v1/memories/search', { config: { scope: 'memories:read', audit: 'read' } }, ok);
  app.post('/mcp', { config: { authenticated: true } }, ok);
  app.get('/v1/keys', { config: { scope: 'admin:keys' } }, ok);
  app.post('/v1/lookup', { config: { scope: 'memories:read', rateClass: 'read' } }, ok);
  app.get('/health', { config: { public: true } }, ok);
  await app.ready();
  return app;
}

describe(`installRateLimit (${backend})`, () => {
  let t: TestEngram;
  let quotas: QuotaService;
  const newOrg = async () => (await t.makeOrg()).orgId;

  beforeAll(async () => {
    t = await createTestEngram();
    quotas = new QuotaService({ system: t.engram.system, defaults: DEFAULTS, burstSeconds: BURST_SECONDS });
  });
  afterAll(async () => t?.close());

  describe.each(variants)('with $name', ({ create }) => {
    let limiter: RateLimiter;
    let app: FastifyInstance;
    const rejected: RateClass[] = [];

    beforeAll(async () => {
      limiter = await create();
      app = await limitedApp({ limiter, quotas, enabled: true, onReject: (c) => rejected.push(c) });
    });
    afterAll(async () => {
      await app?.close();
      await limiter?.close();
    });

    const get = (url: string, org: string) => app.inject({ method: 'GET', url, headers: { 'x-org': org } });
    const post = (url: string, org: string) =>
      app.inject({ method: 'POST', url, headers: { 'x-org': org }, payload: {} });

    it('sends RateLimit and X-RateLimit headers that count down', async () => {
      const org = await newOrg();
      const first = await get('/v1/memories', org);
      expect(first.statusCode).toBe(200);
      expect(first.headers).toMatchObject({
        'ratelimit-limit': '3',
        'ratelimit-remaining': '2',
        'ratelimit-policy': '3;w=180',
        'x-ratelimit-limit': '3',
        'x-ratelimit-remaining': '2',
      });
      expect(Number(first.headers['ratelimit-reset'])).toBeGreaterThanOrEqual(59);
      expect(Number(first.headers['ratelimit-reset'])).toBeLessThanOrEqual(60);
      expect(first.headers['x-ratelimit-reset']).toBe(first.headers['ratelimit-reset']);
      expect(first.headers['retry-after']).toBeUndefined();
      expect((await get('/v1/memories', org)).headers['ratelimit-remaining']).toBe('1');
    });

    it('answers 429 RATE_LIMITED with Retry-After once the bucket is empty', async () => {
      const org = await newOrg();
      for (let i = 0; i < 3; i++) expect((await get('/v1/memories', org)).statusCode).toBe(200);
      const before = rejected.length;
      const res = await get('/v1/memories', org);
      expect(res.statusCode).toBe(429);
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(59);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(res.headers).toMatchObject({ 'ratelimit-limit': '3', 'ratelimit-remaining': '0' });
      expect(res.json()).toEqual({
        error: {
          code: 'RATE_LIMITED',
          message: expect.stringMatching(/^Too many read requests/),
          requestId: expect.any(String),
          details: { class: 'read', limit: 3, perMinute: 1, retryAfterSeconds: Number(res.headers['retry-after']) },
        },
      });
      expect(rejected.slice(before)).toEqual(['read']);
    });

    it('lets exactly the burst through out of 20 concurrent requests', async () => {
      const org = await newOrg();
      const codes = await Promise.all(Array.from({ length: 20 }, () => get('/v1/memories', org)));
      expect(codes.filter((r) => r.statusCode === 200)).toHaveLength(3);
      expect(codes.filter((r) => r.statusCode === 429)).toHaveLength(17);
    });

    it('does not spend the bucket of another org', async () => {
      const [a, b] = [await newOrg(), await newOrg()];
      for (let i = 0; i < 3; i++) await get('/v1/memories', a);
      expect((await get('/v1/memories', a)).statusCode).toBe(429);
      const other = await get('/v1/memories', b);
      expect(other.statusCode).toBe(200);
      expect(other.headers['ratelimit-remaining']).toBe('2');
    });

    it('keeps one bucket per class: read, write, search (REST and MCP), admin, and a declared rateClass', async () => {
      const org = await newOrg();
      for (let i = 0; i < 3; i++) await get('/v1/memories', org);
      expect((await get('/v1/memories', org)).statusCode).toBe(429);
      // A POST declared as `read` shares the exhausted read bucket.
      expect((await post('/v1/lookup', org)).statusCode).toBe(429);
      expect((await post('/v1/memories', org)).headers['ratelimit-remaining']).toBe('2');
      expect((await post('/v1/memories/search', org)).headers['ratelimit-remaining']).toBe('2');
      expect((await post('/mcp', org)).headers['ratelimit-remaining']).toBe('1'); // same search bucket
      expect((await get('/v1/keys', org)).headers['ratelimit-remaining']).toBe('2');
      expect((await post('/v1/memories/search', org)).statusCode).toBe(200); // the last search token
      const denied = await post('/mcp', org);
      expect(denied.statusCode).toBe(429);
      expect(denied.json().error.details.class).toBe('search');
    });

    it('respects an org override stored in org_quotas', async () => {
      const [generous, plain] = [await newOrg(), await newOrg()];
      await quotas.override(generous, { read: 2 }); // 2/min × 180 s = a burst of 6
      expect(await t.engram.system.findOrgQuotas(generous)).toEqual({
        read: 2,
        write: null,
        search: null,
        admin: null,
        import: null,
      });
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) codes.push((await get('/v1/memories', generous)).statusCode);
      expect(codes).toEqual([200, 200, 200, 200, 200, 200, 429]);
      expect((await get('/v1/memories', generous)).json().error.details).toMatchObject({ limit: 6, perMinute: 2 });
      // Other classes of that org, and other orgs, keep the defaults.
      expect((await post('/v1/memories', generous)).headers['ratelimit-limit']).toBe('3');
      expect((await get('/v1/memories', plain)).headers['ratelimit-limit']).toBe('3');
    });

    it('does not limit public routes or requests without a context', async () => {
      const org = await newOrg();
      const pub = await get('/health', org);
      expect(pub.statusCode).toBe(200);
      expect(pub.headers['ratelimit-limit']).toBeUndefined();
      const anon = await app.inject({ method: 'GET', url: '/v1/memories' });
      expect(anon.headers['ratelimit-limit']).toBeUndefined();
    });
  });

  describe('fail open', () => {
    it('allows requests with X-RateLimit-Degraded when Valkey is unreachable, warning once', async () => {
      const lines: string[] = [];
      const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(s) });
      const dead = new ValkeyRateLimiter('redis://127.0.0.1:1', { commandTimeoutMs: 200 });
      await dead.connect().catch(() => undefined);
      const app = await limitedApp({ limiter: dead, quotas, enabled: true, log });
      try {
        const org = await newOrg();
        for (let i = 0; i < 5; i++) {
          const res = await app.inject({ method: 'GET', url: '/v1/memories', headers: { 'x-org': org } });
          expect(res.statusCode).toBe(200);
          expect(res.headers['x-ratelimit-degraded']).toBe('true');
          expect(res.headers['ratelimit-limit']).toBeUndefined();
        }
        expect(lines).toHaveLength(1);
        expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ level: 40, rateClass: 'read', limiter: 'valkey' });
      } finally {
        await app.close();
        await dead.close();
      }
    });
  });

  it('installs nothing when disabled', async () => {
    const limiter = new LocalRateLimiter();
    const app = await limitedApp({ limiter, quotas, enabled: false });
    try {
      const org = await newOrg();
      for (let i = 0; i < 5; i++) {
        const res = await app.inject({ method: 'GET', url: '/v1/memories', headers: { 'x-org': org } });
        expect(res.statusCode).toBe(200);
        expect(res.headers['ratelimit-limit']).toBeUndefined();
      }
    } finally {
      await app.close();
    }
  });
});

describe(`${QuotaService.name} (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t?.close());

  const service = () =>
    new QuotaService({
      system: t.engram.system,
      defaults: { read: 1200, write: 600, search: 600, admin: 120, import: 60_000 },
      burstSeconds: 15,
    });

  it('derives the bucket from the default: burst = burstSeconds of the rate', async () => {
    const org = await t.makeOrg();
    expect(await service().limitFor(org.orgId, 'read')).toEqual({
      perMinute: 1200,
      bucket: { capacity: 300, refillPerSecond: 20 },
    });
  });

  it('merges partial overrides and returns a class to its default with null', async () => {
    const org = await t.makeOrg();
    const s = service();
    await s.override(org.orgId, { read: 60, admin: 10 });
    expect(await s.override(org.orgId, { read: null, write: 30 })).toEqual({
      read: null,
      write: 30,
      search: null,
      admin: 10,
      import: null,
    });
    expect((await s.limitFor(org.orgId, 'read')).perMinute).toBe(1200);
    expect((await s.limitFor(org.orgId, 'write')).perMinute).toBe(30);
  });

  it('serves overrides from its cache until it expires', async () => {
    const org = await t.makeOrg();
    let now = 0;
    const reader = new QuotaService({
      system: t.engram.system,
      defaults: { read: 1200, write: 600, search: 600, admin: 120, import: 60_000 },
      burstSeconds: 15,
      now: () => now,
    });
    expect((await reader.limitFor(org.orgId, 'read')).perMinute).toBe(1200);
    await service().override(org.orgId, { read: 90 }); // another replica
    expect((await reader.limitFor(org.orgId, 'read')).perMinute).toBe(1200);
    now += 30_001;
    expect((await reader.limitFor(org.orgId, 'read')).perMinute).toBe(90);
  });

  it('refuses invalid values and unknown orgs', async () => {
    const org = await t.makeOrg();
    await expect(service().override(org.orgId, { read: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(service().override(org.orgId, { write: 1.5 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(service().override(randomUUID(), { read: 10 })).rejects.toMatchObject({ code: 'ORG_NOT_FOUND' });
  });

  it('does not return the quotas of another org to the app role (RLS)', async () => {
    const [a, b] = [await t.makeOrg(), await t.makeOrg()];
    await service().override(a.orgId, { read: 11 });
    await service().override(b.orgId, { read: 22 });
    const seen = await t.engram.database.db.transaction().execute(async (tx) => {
      await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${b.orgId}, true)`.execute(
        tx,
      );
      return (
        await sql<{ org_id: string; read_per_min: number }>`SELECT org_id, read_per_min FROM org_quotas`.execute(tx)
      ).rows;
    });
    expect(seen).toEqual([{ org_id: b.orgId, read_per_min: 22 }]);
  });

  it('deletes an org’s quotas with the org', async () => {
    const org = await t.makeOrg();
    await service().override(org.orgId, { admin: 5 });
    await sql`DELETE FROM orgs WHERE id = ${org.orgId}`.execute(t.engram.database.adminDb);
    expect(await t.engram.system.findOrgQuotas(org.orgId)).toBeUndefined();
  });
});
