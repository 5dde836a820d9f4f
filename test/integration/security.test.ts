import { Writable } from 'node:stream';
import { sql } from 'kysely';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_CHAIN } from '../../src/domain/audit/audit.types.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';
import {
  dpopClient,
  jwtEnv,
  mintToken,
  signingKey,
  TEST_PUBLIC_URL,
  type DpopClient,
  type SigningKey,
} from '../helpers/tokens.ts';

const me = `${TEST_PUBLIC_URL}/v1/me`;

describe(`OAuth 2.1 bearer tokens (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  let ed: SigningKey;
  let es: SigningKey;
  let rs: SigningKey;
  let stranger: SigningKey;

  beforeAll(async () => {
    [ed, es, rs, stranger] = await Promise.all([
      signingKey('EdDSA', 'k-ed'),
      signingKey('ES256', 'k-es'),
      signingKey('RS256', 'k-rs'),
      signingKey('EdDSA', 'k-ed'), // same kid, other key: a forgery
    ]);
    t = await createTestEngram(jwtEnv(ed, es, rs));
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  const get = (url: string, authorization?: string) =>
    t.app.inject({ method: 'GET', url, headers: authorization === undefined ? {} : { authorization } });

  it('accepts EdDSA, ES256 and RS256 tokens from any active key (kid rotation) and resolves the org by id or slug', async () => {
    for (const [key, ref] of [
      [ed, org.orgId],
      [es, org.slug],
      [rs, org.orgId],
    ] as const) {
      const res = await get('/v1/me', `Bearer ${await mintToken(key, { org: ref, roles: ['member'] })}`);
      expect(res.statusCode, key.alg).toBe(200);
      expect(res.json()).toMatchObject({
        orgId: org.orgId,
        actor: { type: 'user', id: 'user-1' },
        roles: ['member'],
        authMethod: 'jwt',
      });
      expect(res.json().scopes.sort()).toEqual(['code:read', 'memories:read', 'memories:write']);
    }
  });

  it('answers 401 with a Bearer challenge and no error code when credentials are missing', async () => {
    const res = await get('/v1/memories');
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('UNAUTHENTICATED');
    const challenge = String(res.headers['www-authenticate']);
    expect(challenge).toMatch(/^Bearer realm="engram"/);
    expect(challenge).toMatch(/DPoP realm="engram", (resource_metadata="[^"]+", )?algs="[^"]*ES256/);
    expect(challenge).not.toContain('error=');
    // RFC 9728: the challenge says where to learn how to get a token for this resource.
    expect(challenge).toContain('resource_metadata="https://engram.test/.well-known/oauth-protected-resource"');
  });

  it.each([
    ['expired', { expiresIn: -120 }, /expired/],
    ['for another audience', { aud: 'https://other.example' }, /not meant for this server/],
    ['from another issuer', { iss: 'https://evil.example' }, /untrusted issuer/],
    ['not valid yet', { notBefore: 600 }, /not valid yet/],
    ['for an unknown org', { org: 'no-such-org' }, /not known here/],
  ] as const)('refuses a token %s with 401 invalid_token', async (_what, opts, message) => {
    const token = await mintToken(ed, { org: org.orgId, roles: ['owner'], ...opts });
    const res = await get('/v1/me', `Bearer ${token}`);
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(message);
    expect(res.json().error.details.oauthError).toBe('invalid_token');
    expect(String(res.headers['www-authenticate'])).toMatch(
      /^Bearer realm="engram", (resource_metadata="[^"]+", )?error="invalid_token"/,
    );
  });

  it('tolerates the configured clock skew on exp', async () => {
    const token = await mintToken(ed, { org: org.orgId, roles: ['reader'], expiresIn: -10 });
    expect((await get('/v1/me', `Bearer ${token}`)).statusCode).toBe(200);
  });

  it('refuses a forged signature, an HS256 token, an unsigned token and garbage', async () => {
    const forged = await mintToken(stranger, { org: org.orgId, roles: ['owner'] });
    const hs = await new (await import('jose')).SignJWT({ org_id: org.orgId, roles: ['owner'] })
      .setProtectedHeader({ alg: 'HS256', kid: 'k-ed' })
      .setIssuer('https://idp.engram.test')
      .setAudience('https://engram.test')
      .setSubject('x')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('a'.repeat(32)));
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none' })}.${b64({ org_id: org.orgId, sub: 'x', exp: 9e9, iss: 'https://idp.engram.test', aud: 'https://engram.test' })}.`;
    for (const token of [forged, hs, none, 'eyJhbGciOi.garbage.x']) {
      const res = await get('/v1/me', `Bearer ${token}`);
      expect(res.statusCode, token.slice(0, 20)).toBe(401);
      expect(res.json().error.details.oauthError).toBe('invalid_token');
    }
  });

  it('answers 403 insufficient_scope naming the scope, and narrows role scopes by token scopes', async () => {
    const reader = await mintToken(es, { org: org.orgId, roles: ['reader'] });
    expect((await get('/v1/memories', `Bearer ${reader}`)).statusCode).toBe(200);
    const write = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { authorization: `Bearer ${reader}` },
      payload: { content: 'a reader cannot write this' },
    });
    expect(write.statusCode).toBe(403);
    expect(write.json().error).toMatchObject({ code: 'FORBIDDEN', details: { requiredScope: 'memories:write' } });
    expect(String(write.headers['www-authenticate'])).toMatch(/error="insufficient_scope".*scope="memories:write"/);

    // An admin's token delegated only memories:read can read but not administer keys.
    const narrowed = await mintToken(es, { org: org.orgId, roles: ['admin'], scope: 'memories:read admin:unknown' });
    const who = await get('/v1/me', `Bearer ${narrowed}`);
    expect(who.json().scopes).toEqual(['memories:read']);
    expect((await get('/v1/keys', `Bearer ${narrowed}`)).statusCode).toBe(403);
    // Scopes alone (no roles) decide for a machine client.
    const machine = await mintToken(es, { org: org.orgId, scope: 'audit:read', sub: 'svc-1' });
    expect((await get('/v1/audit', `Bearer ${machine}`)).statusCode).toBe(200);
    expect((await get('/v1/memories', `Bearer ${machine}`)).statusCode).toBe(403);
  });

  it('never takes the org from a header, query or body the client controls', async () => {
    const other = await t.makeOrg();
    const token = await mintToken(ed, { org: org.orgId, roles: ['member'] });
    const res = await t.app.inject({
      method: 'POST',
      url: `/v1/memories?org_id=${other.orgId}&orgId=${other.orgId}`,
      headers: { authorization: `Bearer ${token}`, 'x-org-id': other.orgId, 'x-engram-org': other.slug },
      payload: { content: 'where does this land?' },
    });
    // The body schema is strict: an org field is refused outright, never honoured.
    const withBodyOrg = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { authorization: `Bearer ${token}` },
      payload: { content: 'x', orgId: other.orgId },
    });
    expect(withBodyOrg.statusCode).toBe(400);
    expect(res.statusCode).toBe(201);
    const id = res.json().id as string;
    expect((await get(`/v1/memories/${id}`, org.auth.authorization)).statusCode).toBe(200);
    expect((await get(`/v1/memories/${id}`, other.auth.authorization)).statusCode).toBe(404);
  });
});

describe(`DPoP-bound tokens (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;
  let key: SigningKey;
  let client: DpopClient;
  let token: string;

  beforeAll(async () => {
    key = await signingKey('ES256');
    t = await createTestEngram(jwtEnv(key));
    org = await t.makeOrg();
    client = await dpopClient('ES256');
    token = await mintToken(key, { org: org.orgId, roles: ['member'], jkt: client.jkt });
  });
  afterAll(async () => t.close());

  const call = (proof: string | undefined, o: { method?: 'GET' | 'POST'; url?: string; scheme?: string } = {}) =>
    t.app.inject({
      method: o.method ?? 'GET',
      url: o.url ?? '/v1/me',
      headers: {
        authorization: `${o.scheme ?? 'DPoP'} ${token}`,
        ...(proof === undefined ? {} : { dpop: proof }),
      },
    });

  it('accepts a bound token with a valid proof', async () => {
    const res = await call(await client.proof({ htm: 'GET', htu: me, accessToken: token }));
    expect(res.statusCode).toBe(200);
    expect(res.json().authMethod).toBe('jwt_dpop');
  });

  const refusals: Array<[string, () => Promise<{ proof?: string; scheme?: string }>, RegExp]> = [
    ['the proof is missing', async () => ({}), /DPoP header is missing/],
    [
      'the method differs',
      async () => ({ proof: await client.proof({ htm: 'POST', htu: me, accessToken: token }) }),
      /htm/,
    ],
    [
      'the URL differs',
      async () => ({
        proof: await client.proof({ htm: 'GET', htu: `${TEST_PUBLIC_URL}/v1/keys`, accessToken: token }),
      }),
      /htu/,
    ],
    [
      'iat is stale',
      async () => ({
        proof: await client.proof({
          htm: 'GET',
          htu: me,
          accessToken: token,
          iat: Math.floor(Date.now() / 1000) - 600,
        }),
      }),
      /iat/,
    ],
    [
      'another key signed it',
      async () => ({ proof: await (await dpopClient()).proof({ htm: 'GET', htu: me, accessToken: token }) }),
      /cnf\.jkt/,
    ],
    ['ath is missing', async () => ({ proof: await client.proof({ htm: 'GET', htu: me }) }), /ath/],
  ];

  it.each(refusals)('refuses when %s (401 invalid_dpop_proof)', async (_what, make, message) => {
    const { proof } = await make();
    const res = await call(proof);
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(message);
    expect(res.json().error.details.oauthError).toBe('invalid_dpop_proof');
    expect(String(res.headers['www-authenticate'])).toMatch(
      /^DPoP realm="engram", (resource_metadata="[^"]+", )?algs="[^"]+", error="invalid_dpop_proof"/,
    );
  });

  it('refuses a replayed proof', async () => {
    const proof = await client.proof({ htm: 'GET', htu: me, accessToken: token });
    expect((await call(proof)).statusCode).toBe(200);
    const again = await call(proof);
    expect(again.statusCode).toBe(401);
    expect(again.json().error.message).toMatch(/replayed/);
  });

  it('refuses a bound token sent as Bearer, and an unbound token sent as DPoP', async () => {
    const asBearer = await call(await client.proof({ htm: 'GET', htu: me, accessToken: token }), { scheme: 'Bearer' });
    expect(asBearer.statusCode).toBe(401);
    expect(asBearer.json().error.message).toMatch(/DPoP-bound token must be sent as "DPoP/);
    const unbound = await mintToken(key, { org: org.orgId, roles: ['member'] });
    const res = await t.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: {
        authorization: `DPoP ${unbound}`,
        dpop: await client.proof({ htm: 'GET', htu: me, accessToken: unbound }),
      },
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(/not DPoP-bound/);
  });
});

describe(`DPoP server nonces and AUTH_REQUIRE_DPOP (${backend})`, () => {
  let t: TestEngram;
  let key: SigningKey;
  let org: TestOrg;

  beforeAll(async () => {
    key = await signingKey('EdDSA');
    t = await createTestEngram({
      ...jwtEnv(key),
      DPOP_NONCE: 'true',
      DPOP_NONCE_SECRET: 'n'.repeat(40),
      AUTH_REQUIRE_DPOP: 'true',
    });
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  it('asks for the server nonce with use_dpop_nonce and DPoP-Nonce, then accepts the retry', async () => {
    const client = await dpopClient('EdDSA');
    const token = await mintToken(key, { org: org.orgId, roles: ['reader'], jkt: client.jkt });
    const first = await t.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await client.proof({ htm: 'GET', htu: me, accessToken: token }),
      },
    });
    expect(first.statusCode).toBe(401);
    expect(String(first.headers['www-authenticate'])).toMatch(/error="use_dpop_nonce"/);
    const nonce = first.headers['dpop-nonce'];
    expect(typeof nonce).toBe('string');
    const retry = await t.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await client.proof({ htm: 'GET', htu: me, accessToken: token, nonce: String(nonce) }),
      },
    });
    expect(retry.statusCode).toBe(200);
  });

  it('refuses unbound bearer tokens when DPoP is required, but still takes API keys', async () => {
    const bearer = await mintToken(key, { org: org.orgId, roles: ['reader'] });
    const res = await t.app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${bearer}` } });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(/requires DPoP/);
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: org.auth })).statusCode).toBe(200);
  });
});

describe(`API keys only, the quick-start default (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t.close());

  it('refuses JWTs clearly when no identity provider is configured', async () => {
    const key = await signingKey('EdDSA');
    const res = await t.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${await mintToken(key, { org: 'default' })}` },
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.message).toMatch(/accepts only Engram API keys/);
    expect(String(res.headers['www-authenticate'])).not.toContain('DPoP');
  });

  it('does not let a key mint another key with scopes it lacks', async () => {
    const org = await t.makeOrg();
    const keysOnly = await org.keyWith(['admin:keys']);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: { authorization: `Bearer ${keysOnly}` },
      payload: { name: 'escalate', scopes: ['admin:keys', 'audit:read'] },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.details.scopes).toEqual(['audit:read']);
    const inherit = await t.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: { authorization: `Bearer ${keysOnly}` },
      payload: { name: 'same rights' },
    });
    expect(inherit.statusCode).toBe(201);
    expect(inherit.json().key.scopes).toEqual(['admin:keys']);
  });
});

describe(`security headers and CORS (${backend})`, () => {
  let closed: TestEngram;
  let open: TestEngram;
  beforeAll(async () => {
    closed = await createTestEngram();
    open = await createTestEngram({ CORS_ORIGINS: 'https://app.example.com', TRUST_PROXY: 'true' });
  });
  afterAll(async () => {
    await closed.close();
    await open.close();
  });

  it('sends CSP, frame, sniffing and referrer headers on API responses', async () => {
    const res = await closed.app.inject({ method: 'GET', url: '/health/live' });
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['strict-transport-security']).toBeUndefined();
    const unauth = await closed.app.inject({ method: 'GET', url: '/v1/memories' });
    expect(unauth.headers['x-content-type-options']).toBe('nosniff');
  });

  it('sends HSTS only when the request came over TLS', async () => {
    const viaProxy = await open.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(viaProxy.headers['strict-transport-security']).toMatch(/^max-age=\d+; includeSubDomains$/);
    // Without TRUST_PROXY the forwarded header is not believed.
    const spoofed = await closed.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(spoofed.headers['strict-transport-security']).toBeUndefined();
  });

  it('keeps CORS closed by default and opens it only to listed origins', async () => {
    const origin = 'https://app.example.com';
    const none = await closed.app.inject({ method: 'GET', url: '/health/live', headers: { origin } });
    expect(none.headers['access-control-allow-origin']).toBeUndefined();
    const allowed = await open.app.inject({ method: 'GET', url: '/health/live', headers: { origin } });
    expect(allowed.headers['access-control-allow-origin']).toBe(origin);
    const other = await open.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { origin: 'https://evil.example.com' },
    });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await open.app.inject({
      method: 'OPTIONS',
      url: '/v1/memories',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,dpop',
      },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(origin);
    expect(String(preflight.headers['access-control-allow-headers'])).toContain('dpop');
  });
});

describe(`error sanitisation (${backend})`, () => {
  let t: TestEngram;
  const lines: string[] = [];
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    t = await createTestEngram({}, { logger: pino({ level: 'error' }, sink) });
  });
  afterAll(async () => t.close());

  it('gives the client an error id and no SQL, stack or driver text; the log has the details under that id', async () => {
    const org = await t.makeOrg();
    const db = t.engram.database.adminDb;
    await sql`ALTER TABLE memory_history RENAME TO memory_history_hidden`.execute(db);
    try {
      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/memories',
        headers: org.auth,
        payload: { content: 'version one' },
      });
      const res = await t.app.inject({
        method: 'GET',
        url: `/v1/memories/${created.json().id}/history`,
        headers: org.auth,
      });
      expect(res.statusCode).toBe(500);
      const body = res.body;
      const { error } = res.json();
      expect(error.code).toBe('INTERNAL');
      expect(error.errorId).toMatch(/^[0-9a-f-]{36}$/);
      for (const leak of ['memory_history', 'relation', 'SELECT', 'select', ' at ', '.ts:', 'stack', 'postgres']) {
        expect(body, leak).not.toContain(leak);
      }
      const logged = lines.find((l) => l.includes(error.errorId as string));
      expect(logged).toBeDefined();
      expect(logged).toMatch(/memory_history/);
    } finally {
      await sql`ALTER TABLE memory_history_hidden RENAME TO memory_history`.execute(db);
    }
  });
});

describe(`geo residency (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram({ ENGRAM_REGION: 'eu-west', ENGRAM_SERVED_REGIONS: 'eu-west,eu-central' });
  });
  afterAll(async () => t.close());

  it('serves orgs of its regions and refuses others with 403 RESIDENCY_VIOLATION naming the region, audited', async () => {
    const home = await t.makeOrg();
    expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: home.auth })).statusCode).toBe(200);
    const central = await t.engram.orgs.create({ slug: `central-${uuidv7().slice(-6)}`, region: 'eu-central' });
    const centralKey = await t.engram.apiKeys.create(central.id, { name: 'k' });
    const ok = await t.app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${centralKey.secret}` },
    });
    expect(ok.statusCode).toBe(200);

    const us = await t.engram.orgs.create({ slug: `us-${uuidv7().slice(-6)}`, region: 'us-east' });
    const usKey = await t.engram.apiKeys.create(us.id, { name: 'k' });
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { authorization: `Bearer ${usKey.secret}` },
      payload: { content: 'must not be stored in the EU' },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toMatchObject({
      code: 'RESIDENCY_VIOLATION',
      details: { orgRegion: 'us-east', servedRegions: ['eu-west', 'eu-central'] },
    });
    expect(res.json().error.message).toMatch(/us-east/);
    const stored = await sql<{ n: number }>`SELECT count(*)::int AS n FROM memories WHERE org_id = ${us.id}`.execute(
      t.engram.database.adminDb,
    );
    expect(stored.rows[0]?.n).toBe(0);
    const audited = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_log
      WHERE chain_id = ${SYSTEM_CHAIN} AND details->>'orgId' = ${us.id} AND outcome = 'denied'`.execute(
      t.engram.database.adminDb,
    );
    expect(audited.rows[0]?.n).toBe(1);
  });
});

describe(`audit log (${backend})`, () => {
  let t: TestEngram;
  beforeAll(async () => {
    t = await createTestEngram();
  });
  afterAll(async () => t.close());

  it('records who did what to which resource, from where, with outcome — failures included', async () => {
    const org = await t.makeOrg();
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { ...org.auth, 'user-agent': 'audit-test/1.0' },
      payload: { content: 'audited write' },
    });
    const id = created.json().id as string;
    await t.app.inject({ method: 'DELETE', url: `/v1/memories/${id}`, headers: org.auth });
    const readOnly = await org.keyWith(['memories:read']);
    await t.app.inject({
      method: 'POST',
      url: '/v1/memories',
      headers: { authorization: `Bearer ${readOnly}` },
      payload: { content: 'denied' },
    });

    const res = await t.app.inject({ method: 'GET', url: `/v1/audit?resourceId=${id}`, headers: org.auth });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as Array<Record<string, unknown>>;
    expect(items.map((e) => e.action)).toEqual(['memory.delete', 'memory.create']);
    expect(items[1]).toMatchObject({
      actor: { type: 'api_key', id: org.ctx.actor.id, authMethod: 'api_key' },
      resource: { type: 'memory', id },
      outcome: 'success',
      status: 201,
      ip: '127.0.0.1',
      userAgent: 'audit-test/1.0',
    });
    const denied = await t.app.inject({ method: 'GET', url: '/v1/audit?outcome=denied', headers: org.auth });
    expect(denied.json().items[0]).toMatchObject({
      action: 'memory.create',
      status: 403,
      details: { errorCode: 'FORBIDDEN' },
    });
    // Reads are not audited by default; the audit read itself is.
    const reads = await t.app.inject({ method: 'GET', url: '/v1/audit?action=memory.list', headers: org.auth });
    expect(reads.json().items).toEqual([]);
    const pageOne = await t.app.inject({ method: 'GET', url: '/v1/audit?limit=2', headers: org.auth });
    expect(pageOne.json().items).toHaveLength(2);
    const pageTwo = await t.app.inject({
      method: 'GET',
      url: `/v1/audit?limit=2&cursor=${pageOne.json().nextCursor}`,
      headers: org.auth,
    });
    expect(pageTwo.json().items[0].seq).toBeLessThan(pageOne.json().items[1].seq);
  });

  it('files failed authentication under the key’s org when known, else on the system chain', async () => {
    const org = await t.makeOrg();
    const issued = await t.engram.apiKeys.create(org.orgId, { name: 'soon revoked' });
    await t.engram.apiKeys.revoke(org.ctx, issued.key.id);
    const revoked = await t.app.inject({
      method: 'GET',
      url: '/v1/memories',
      headers: { authorization: `Bearer ${issued.secret}` },
    });
    expect(revoked.statusCode).toBe(401);
    // Refusals are summed per source and window (abuse-limits.test.ts); end the window now.
    await t.engram.audit.flushRefusals();
    const mine = await t.app.inject({ method: 'GET', url: '/v1/audit?outcome=failure', headers: org.auth });
    expect(mine.json().items[0]).toMatchObject({
      actor: { type: 'unverified', id: issued.key.id },
      status: 401,
      details: { errorCode: 'UNAUTHENTICATED', reason: 'The API key has been revoked' },
    });

    const before = await t.engram.system.systemAuditChain().findHead();
    await t.app.inject({ method: 'GET', url: '/v1/memories', headers: { authorization: 'Bearer egm_unknown' } });
    await t.engram.audit.flushRefusals();
    const after = await t.engram.system.systemAuditChain().findHead();
    expect(after?.seq).toBe((before?.seq ?? 0) + 1);
    const [entry] = await t.engram.system.systemAuditChain().findChain((after?.seq ?? 1) - 1, 1);
    expect(entry).toMatchObject({ orgId: null, actorType: 'anonymous', outcome: 'failure', status: 401 });
    expect(JSON.stringify(entry)).not.toContain('egm_unknown');
  });

  it('verifies the chain, and detects an edited, a deleted and a truncated entry', async () => {
    const org = await t.makeOrg();
    for (let i = 0; i < 5; i++) {
      await t.app.inject({
        method: 'POST',
        url: '/v1/memories',
        headers: org.auth,
        payload: { content: `entry ${i}` },
      });
    }
    const verify = async () =>
      (await t.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: org.auth })).json();
    expect(await verify()).toMatchObject({ ok: true, entries: 5, problems: [] });
    expect((await t.engram.audit.verifyAll()).every((c) => c.ok)).toBe(true);

    const db = t.engram.database.adminDb;
    // Nobody may change the log through SQL, not even its owner …
    await expect(sql`UPDATE audit_log SET action = 'x' WHERE org_id = ${org.orgId}`.execute(db)).rejects.toThrow(
      /append-only/,
    );
    await expect(sql`DELETE FROM audit_log WHERE org_id = ${org.orgId}`.execute(db)).rejects.toThrow(/append-only/);
    // … so tampering means bypassing triggers, as a superuser could; verification must still catch it.
    const tamper = (statement: ReturnType<typeof sql>) =>
      db.transaction().execute(async (tx) => {
        await sql`SET LOCAL session_replication_role = replica`.execute(tx);
        await statement.execute(tx);
      });

    await tamper(sql`UPDATE audit_log SET status = 200 WHERE org_id = ${org.orgId} AND seq = 2`);
    let v = await verify();
    expect(v.ok).toBe(false);
    expect(v.problems.join('\n')).toMatch(/entry 2 was altered/);
    const bad = (await t.engram.audit.verifyAll()).find((c) => c.chainId === org.orgId);
    expect(bad?.ok).toBe(false);

    await tamper(sql`DELETE FROM audit_log WHERE org_id = ${org.orgId} AND seq = 2`);
    v = await verify();
    expect(v.problems.join('\n')).toMatch(/entries 2\.\.2 are missing/);

    // Entries so far: 5 writes plus one per verify call (audit reads are audited). Cut the newest.
    const last = await sql<{
      seq: number;
    }>`SELECT max(seq)::int AS seq FROM audit_log WHERE org_id = ${org.orgId}`.execute(db);
    const lastSeq = last.rows[0]?.seq ?? 0;
    expect(lastSeq).toBeGreaterThan(5);
    await tamper(sql`DELETE FROM audit_log WHERE org_id = ${org.orgId} AND seq = ${lastSeq}`);
    v = await verify();
    expect(v.problems.join('\n')).toContain(`entries ${lastSeq}..${lastSeq} are missing from the end`);
  });
});
