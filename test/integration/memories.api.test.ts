import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

describe(`memories REST API (${backend})`, () => {
  let t: TestEngram;
  let org: TestOrg;

  beforeAll(async () => {
    t = await createTestEngram({ BODY_LIMIT_BYTES: '4096' });
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  const post = (payload: unknown, headers = org.auth) =>
    t.app.inject({ method: 'POST', url: '/v1/memories', headers, payload: payload as object });
  const count = async () =>
    (await t.app.inject({ method: 'GET', url: '/v1/memories?limit=100', headers: org.auth })).json().items
      .length as number;

  describe('POST /v1/memories', () => {
    it('stores a memory and returns it with a UUIDv7 id', async () => {
      const res = await post({
        content: 'Use pnpm in the web repo',
        scope: { project: 'web', user: 'ann' },
        tags: ['tooling', 'tooling', ' js '],
        metadata: { team: 'fe' },
      });
      expect(res.statusCode).toBe(201);
      const m = res.json();
      expect(m.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(m).toMatchObject({
        content: 'Use pnpm in the web repo',
        scope: { project: 'web', user: 'ann' },
        tags: ['js', 'tooling'],
        metadata: { team: 'fe' },
        version: 1,
        deduplicated: false,
      });
      expect(m.contentHash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('does not store an exact duplicate in the same scope twice, but does in another scope', async () => {
      const first = await post({ content: 'Deploys happen on Tuesdays', scope: { project: 'ops' } });
      const again = await post({ content: 'Deploys happen on Tuesdays', scope: { project: 'ops' } });
      const other = await post({ content: 'Deploys happen on Tuesdays', scope: { project: 'web' } });
      expect(first.statusCode).toBe(201);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ id: first.json().id, deduplicated: true });
      expect(other.statusCode).toBe(201);
      expect(other.json().id).not.toBe(first.json().id);
    });

    it('rejects unknown fields, empty content and bad dates with the documented error body', async () => {
      const before = await count();
      for (const payload of [
        { content: 'x', orgId: 'someone-else' },
        { content: '   ' },
        { content: 'x', scope: { team: 'a' } },
        { content: 'x', validFrom: 'yesterday' },
        { content: 'x', validFrom: '2026-01-02T00:00:00Z', validTo: '2026-01-01T00:00:00Z' },
        {},
      ]) {
        const res = await post(payload);
        expect(res.statusCode, JSON.stringify(payload)).toBe(400);
        const body = res.json();
        expect(body.error.code).toBe('VALIDATION_FAILED');
        expect(typeof body.error.message).toBe('string');
        expect(body.error.requestId).toBe(res.headers['x-request-id']);
      }
      expect(await count()).toBe(before);
    });

    it('answers 413 to an oversized body and stores nothing', async () => {
      const before = await count();
      const res = await post({ content: 'a'.repeat(10_000) });
      expect(res.statusCode).toBe(413);
      expect(res.json().error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(await count()).toBe(before);
    });

    it('answers 400 to malformed JSON and 415 to a non-JSON body', async () => {
      const bad = await t.app.inject({
        method: 'POST',
        url: '/v1/memories',
        headers: { ...org.auth, 'content-type': 'application/json' },
        payload: '{"content": ',
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBe('VALIDATION_FAILED');
      const text = await t.app.inject({
        method: 'POST',
        url: '/v1/memories',
        headers: { ...org.auth, 'content-type': 'text/plain' },
        payload: 'hello',
      });
      expect(text.statusCode).toBe(415);
      expect(text.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    });
  });

  describe('GET, PATCH, DELETE /v1/memories/:id', () => {
    it('gets, updates with history, and deletes', async () => {
      const id = (await post({ content: 'The API uses Fastify', tags: ['stack'] })).json().id as string;
      expect((await t.app.inject({ method: 'GET', url: `/v1/memories/${id}`, headers: org.auth })).json().content).toBe(
        'The API uses Fastify',
      );

      const p1 = await t.app.inject({
        method: 'PATCH',
        url: `/v1/memories/${id}`,
        headers: org.auth,
        payload: { content: 'The API uses Fastify 5', expectedVersion: 1 },
      });
      expect(p1.statusCode).toBe(200);
      expect(p1.json()).toMatchObject({ version: 2, content: 'The API uses Fastify 5', tags: ['stack'] });
      const p2 = await t.app.inject({
        method: 'PATCH',
        url: `/v1/memories/${id}`,
        headers: org.auth,
        payload: { tags: ['stack', 'http'], metadata: { checked: true } },
      });
      expect(p2.json()).toMatchObject({ version: 3, tags: ['http', 'stack'], metadata: { checked: true } });

      const hist = await t.app.inject({ method: 'GET', url: `/v1/memories/${id}/history`, headers: org.auth });
      expect(hist.statusCode).toBe(200);
      const versions = hist.json().versions as Array<{ version: number; content: string; supersededAt: string | null }>;
      expect(versions.map((v) => [v.version, v.content])).toEqual([
        [1, 'The API uses Fastify'],
        [2, 'The API uses Fastify 5'],
        [3, 'The API uses Fastify 5'],
      ]);
      expect(versions.at(-1)?.supersededAt).toBeNull();
      expect(versions[0]?.supersededAt).not.toBeNull();

      const del = await t.app.inject({ method: 'DELETE', url: `/v1/memories/${id}`, headers: org.auth });
      expect(del.statusCode).toBe(204);
      const gone = await t.app.inject({ method: 'GET', url: `/v1/memories/${id}`, headers: org.auth });
      expect(gone.statusCode).toBe(404);
      expect(gone.json().error.code).toBe('MEMORY_NOT_FOUND');
      expect((await t.app.inject({ method: 'DELETE', url: `/v1/memories/${id}`, headers: org.auth })).statusCode).toBe(
        404,
      );
    });

    it('refuses a stale expectedVersion with 409 and changes nothing', async () => {
      const id = (await post({ content: 'Staging DB is Postgres 16' })).json().id as string;
      await t.app.inject({
        method: 'PATCH',
        url: `/v1/memories/${id}`,
        headers: org.auth,
        payload: { content: 'Staging DB is Postgres 17' },
      });
      const stale = await t.app.inject({
        method: 'PATCH',
        url: `/v1/memories/${id}`,
        headers: org.auth,
        payload: { content: 'lost update', expectedVersion: 1 },
      });
      expect(stale.statusCode).toBe(409);
      expect(stale.json().error).toMatchObject({ code: 'CONFLICT', details: { currentVersion: 2 } });
      const now = await t.app.inject({ method: 'GET', url: `/v1/memories/${id}/history`, headers: org.auth });
      expect(now.json().versions).toHaveLength(2);
      expect(now.json().versions[1].content).toBe('Staging DB is Postgres 17');
    });

    it('refuses an update that would duplicate another memory in the scope with 409, leaving both intact', async () => {
      const a = (await post({ content: 'alpha fact', scope: { session: 's1' } })).json().id as string;
      await post({ content: 'beta fact', scope: { session: 's1' } });
      const res = await t.app.inject({
        method: 'PATCH',
        url: `/v1/memories/${a}`,
        headers: org.auth,
        payload: { content: 'beta fact' },
      });
      expect(res.statusCode).toBe(409);
      const after = await t.app.inject({ method: 'GET', url: `/v1/memories/${a}/history`, headers: org.auth });
      expect(after.json().versions.map((v: { content: string }) => v.content)).toEqual(['alpha fact']);
    });

    it('answers 404 for a malformed or unknown id, and 400 for an empty patch', async () => {
      expect(
        (await t.app.inject({ method: 'GET', url: '/v1/memories/not-a-uuid', headers: org.auth })).statusCode,
      ).toBe(404);
      expect(
        (
          await t.app.inject({
            method: 'GET',
            url: '/v1/memories/01a2013f-67d9-747f-96d4-e8d35187ad10',
            headers: org.auth,
          })
        ).statusCode,
      ).toBe(404);
      const id = (await post({ content: 'something to patch' })).json().id as string;
      const empty = await t.app.inject({ method: 'PATCH', url: `/v1/memories/${id}`, headers: org.auth, payload: {} });
      expect(empty.statusCode).toBe(400);
    });
  });

  describe('GET /v1/memories', () => {
    it('pages with a cursor, newest first, without gaps or repeats', async () => {
      const o = await t.makeOrg();
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) ids.push((await post({ content: `note number ${i}` }, o.auth)).json().id as string);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/memories?limit=3${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
        const page = (await t.app.inject({ method: 'GET', url, headers: o.auth })).json();
        seen.push(...page.items.map((m: { id: string }) => m.id));
        cursor = page.nextCursor;
      } while (cursor !== null);
      expect(seen).toEqual([...ids].reverse());
    });

    it('filters by scope, tags, metadata and time', async () => {
      const o = await t.makeOrg();
      const p = (payload: object) => post(payload, o.auth);
      await p({ content: 'a', scope: { user: 'u1', agent: 'bot' }, tags: ['x', 'y'], metadata: { lang: 'ts', n: 1 } });
      await p({ content: 'b', scope: { user: 'u1' }, tags: ['x'], metadata: { lang: 'go' } });
      await p({
        content: 'c',
        scope: { user: 'u2' },
        tags: ['y'],
        validFrom: '2020-01-01T00:00:00Z',
        validTo: '2021-01-01T00:00:00Z',
      });
      const q = async (qs: string) =>
        (await t.app.inject({ method: 'GET', url: `/v1/memories?${qs}`, headers: o.auth }))
          .json()
          .items.map((m: { content: string }) => m.content)
          .sort();
      expect(await q('user=u1')).toEqual(['a', 'b']);
      expect(await q('user=u1&agent=bot')).toEqual(['a']);
      expect(await q('tag=x')).toEqual(['a', 'b']);
      expect(await q('tag=x&tag=y')).toEqual(['a']);
      expect(await q(`metadata=${encodeURIComponent('{"lang":"go"}')}`)).toEqual(['b']);
      expect(await q('validAt=2020-06-01T00:00:00Z')).toEqual(['a', 'b', 'c']);
      expect(await q('validAt=2022-06-01T00:00:00Z')).toEqual(['a', 'b']);
      expect(await q('createdAfter=2999-01-01T00:00:00Z')).toEqual([]);
      const bad = await t.app.inject({ method: 'GET', url: '/v1/memories?metadata=nope', headers: o.auth });
      expect(bad.statusCode).toBe(400);
      const unknown = await t.app.inject({ method: 'GET', url: '/v1/memories?colour=red', headers: o.auth });
      expect(unknown.statusCode).toBe(400);
      const badCursor = await t.app.inject({ method: 'GET', url: '/v1/memories?cursor=zzz', headers: o.auth });
      expect(badCursor.statusCode).toBe(400);
    });
  });

  describe('authentication and scopes', () => {
    it('answers 401 without, with a malformed, or with a revoked key', async () => {
      const none = await t.app.inject({ method: 'GET', url: '/v1/memories' });
      expect(none.statusCode).toBe(401);
      expect(none.json().error.code).toBe('UNAUTHENTICATED');
      expect(none.headers['www-authenticate']).toContain('Bearer');
      const junk = await t.app.inject({
        method: 'GET',
        url: '/v1/memories',
        headers: { authorization: 'Bearer nope' },
      });
      expect(junk.statusCode).toBe(401);

      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/keys',
        headers: org.auth,
        payload: { name: 'temp', scopes: ['memories:read'] },
      });
      expect(created.statusCode).toBe(201);
      const { key, secret } = created.json();
      expect(secret).toMatch(/^egm_[a-z0-9]{12}_/);
      const h = { authorization: `Bearer ${secret}` };
      expect((await t.app.inject({ method: 'GET', url: '/v1/memories', headers: h })).statusCode).toBe(200);
      const listed = await t.app.inject({ method: 'GET', url: '/v1/keys', headers: org.auth });
      // Everything after `egm_<prefix>_`: the secret itself may contain `_` (base64url).
      expect(JSON.stringify(listed.json())).not.toContain(secret.slice('egm_'.length + 12 + 1));
      expect(
        (await t.app.inject({ method: 'DELETE', url: `/v1/keys/${key.id}`, headers: org.auth })).json().revokedAt,
      ).not.toBeNull();
      const revoked = await t.app.inject({ method: 'GET', url: '/v1/memories', headers: h });
      expect(revoked.statusCode).toBe(401);
      expect(revoked.json().error.message).toMatch(/revoked/);
    });

    it('answers 403 when the key lacks the route scope, and writes nothing', async () => {
      const readOnly = await org.keyWith(['memories:read']);
      const before = await count();
      const res = await post({ content: 'should not be stored' }, { authorization: `Bearer ${readOnly}` });
      expect(res.statusCode).toBe(403);
      expect(res.json().error).toMatchObject({ code: 'FORBIDDEN', details: { requiredScope: 'memories:write' } });
      expect(await count()).toBe(before);
      const keys = await t.app.inject({
        method: 'GET',
        url: '/v1/keys',
        headers: { authorization: `Bearer ${readOnly}` },
      });
      expect(keys.statusCode).toBe(403);
    });

    it('rejects an expired key', async () => {
      const past = await t.app.inject({
        method: 'POST',
        url: '/v1/keys',
        headers: org.auth,
        payload: { name: 'old', expiresAt: '2001-01-01T00:00:00Z' },
      });
      expect(past.statusCode).toBe(400);
    });
  });

  it('answers unknown routes with the error body', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/nothing-here', headers: org.auth });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('NOT_FOUND');
  });

  it('serves OpenAPI 3.1 describing the memory routes', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/memories', '/v1/memories/{id}', '/v1/memories/search', '/v1/memories/{id}/history']),
    );
    const docs = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toContain('swagger');
  });
});
