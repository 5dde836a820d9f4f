import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

/**
 * Two orgs take turns at randomised REST calls, mostly aimed at the other org's
 * ids, while a model tracks what each org itself wrote. Any read, write or
 * delete that crosses the org boundary shows up as a leaked marker or id in a
 * response, or as a difference between the model and the store at the end.
 *
 * Replay a failure with FUZZ_SEED=<seed> (printed in every assertion message);
 * FUZZ_RANDOM=1 picks a new seed per run. The default seed is fixed, so plain
 * `npm test` is deterministic.
 */

const DEFAULT_SEED = 0x5eed_2026;
const STEPS = 300;
const SEED_MEMORIES = 6;
const MIN_ALIVE = 3;
const MAX_KEYS = 5;

function fuzzSeed(): number {
  const fixed = process.env.FUZZ_SEED;
  if (fixed !== undefined && fixed !== '') {
    const n = Number(fixed);
    if (!Number.isSafeInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got ${fixed}`);
    return n >>> 0;
  }
  return process.env.FUZZ_RANDOM === '1' ? Date.now() >>> 0 : DEFAULT_SEED;
}

/** mulberry32: a tiny PRNG whose whole state is the 32-bit seed. */
function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

// Shared pools, so filters and searches match memories of both orgs alike.
const USERS = ['ann', 'bob'] as const;
const PROJECTS = ['web', 'ops'] as const;
const TAGS = ['red', 'green', 'blue'] as const;
const TEAMS = ['core', 'edge'] as const;
const WORDS = ['deploy', 'database', 'tuesday', 'cache', 'migration', 'latency', 'release'] as const;

interface MemoryModel {
  readonly id: string;
  readonly user: string;
  readonly project: string;
  content: string;
  version: number;
  tags: string[];
  team: string;
}

interface KeyModel {
  readonly id: string;
  readonly prefix: string;
  readonly secret: string;
  readonly primary: boolean;
  revoked: boolean;
}

/** What one org has written, as the org itself saw it. */
interface Side {
  readonly name: 'A' | 'B';
  readonly org: TestOrg;
  /** A word only this org's content contains; none of its letters beyond f, so no id can hold it. */
  readonly marker: string;
  readonly alive: Map<string, MemoryModel>;
  readonly deleted: Set<string>;
  readonly keys: Map<string, KeyModel>;
  /** resourceId → entries this org's own audit chain must hold for it. */
  readonly audited: Map<string, number>;
  written: number;
}

type Filter = { user?: string; project?: string; tags?: string[]; team?: string };

describe(`cross-org fuzzing (${backend})`, () => {
  const seed = fuzzSeed();
  let t: TestEngram;
  let a: Side;
  let b: Side;

  beforeAll(async () => {
    t = await createTestEngram();
    const side = async (name: 'A' | 'B', marker: string): Promise<Side> => ({
      name,
      org: await t.makeOrg(),
      marker,
      alive: new Map(),
      deleted: new Set(),
      keys: new Map(),
      audited: new Map(),
      written: 0,
    });
    a = await side('A', 'quokkazulu');
    b = await side('B', 'wombatyankee');
  });
  afterAll(async () => t?.close());

  it('never lets one org read, change or delete another org’s data', async () => {
    const rand = mulberry32(seed);
    const int = (n: number) => Math.floor(rand() * n);
    const pick = <T>(xs: readonly T[]): T => {
      if (xs.length === 0) throw new Error('pick from an empty list');
      return xs[int(xs.length)] as T;
    };
    const chance = (p: number) => rand() < p;
    let where = `seed=${seed} setup`;
    const msg = (what: string) => `${where}: ${what} (replay with FUZZ_SEED=${seed})`;

    const inject = (
      auth: { authorization: string },
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      payload?: object,
    ) => t.app.inject({ method, url, headers: auth, ...(payload === undefined ? {} : { payload }) });
    const audit = (s: Side, resourceId: string | undefined) => {
      if (resourceId !== undefined) s.audited.set(resourceId, (s.audited.get(resourceId) ?? 0) + 1);
    };
    const liveKeys = (s: Side) => [...s.keys.values()].filter((k) => !k.revoked);
    const authOf = (k: KeyModel) => ({ authorization: `Bearer ${k.secret}` });
    const other = (s: Side) => (s === a ? b : a);

    /** Everything of `y` that must never appear in a response to `x`, except the id `x` itself sent. */
    const expectNoLeak = (res: LightMyRequestResponse, y: Side, echoed?: string) => {
      const body = echoed === undefined ? res.body : res.body.replaceAll(echoed, '');
      const secrets = [
        y.marker,
        y.org.orgId,
        y.org.slug,
        ...y.alive.keys(),
        ...y.deleted,
        ...[...y.keys.values()].flatMap((k) => [k.id, k.prefix]),
      ];
      for (const s of secrets)
        expect(body.includes(s), msg(`response leaks ${s} of org ${y.name}: ${res.body}`)).toBe(false);
    };

    const newContent = (s: Side) => {
      s.written += 1;
      return `${s.marker} note ${s.written}: ${pick(WORDS)} ${pick(WORDS)}`;
    };
    const randomTags = () => [...new Set([pick(TAGS), ...(chance(0.5) ? [pick(TAGS)] : [])])].sort();

    const expectMemory = (json: Record<string, unknown>, m: MemoryModel) =>
      expect(
        { id: json.id, content: json.content, version: json.version, tags: json.tags, metadata: json.metadata },
        msg(`memory ${m.id}`),
      ).toEqual({ id: m.id, content: m.content, version: m.version, tags: m.tags, metadata: { team: m.team } });

    const createMemory = async (s: Side, auth: { authorization: string }) => {
      const body = {
        content: newContent(s),
        scope: { user: pick(USERS), project: pick(PROJECTS) },
        tags: randomTags(),
        metadata: { team: pick(TEAMS) },
      };
      const res = await inject(auth, 'POST', '/v1/memories', body);
      expect(res.statusCode, msg(res.body)).toBe(201);
      const m: MemoryModel = {
        id: res.json().id,
        user: body.scope.user,
        project: body.scope.project,
        content: body.content,
        version: 1,
        tags: body.tags,
        team: body.metadata.team,
      };
      s.alive.set(m.id, m);
      audit(s, m.id);
      expectMemory(res.json(), m);
    };

    const createKey = async (s: Side, auth: { authorization: string }) => {
      const res = await inject(auth, 'POST', '/v1/keys', { name: `fuzz ${s.name} ${s.keys.size}` });
      expect(res.statusCode, msg(res.body)).toBe(201);
      const { key, secret } = res.json();
      s.keys.set(key.id, { id: key.id, prefix: key.prefix, secret, primary: false, revoked: false });
      audit(s, key.id);
    };

    const matches = (m: MemoryModel, f: Filter) =>
      (f.user === undefined || m.user === f.user) &&
      (f.project === undefined || m.project === f.project) &&
      (f.team === undefined || m.team === f.team) &&
      (f.tags ?? []).every((tag) => m.tags.includes(tag));

    const listQuery = (f: Filter) => {
      const q = new URLSearchParams({ limit: '100' });
      if (f.user !== undefined) q.set('user', f.user);
      if (f.project !== undefined) q.set('project', f.project);
      for (const tag of f.tags ?? []) q.append('tag', tag);
      if (f.team !== undefined) q.set('metadata', JSON.stringify({ team: f.team }));
      return q.toString();
    };

    // Setup: each org stores some memories and one more key through the API.
    for (const s of [a, b]) {
      const keys = (await inject(s.org.auth, 'GET', '/v1/keys')).json().items as Array<{ id: string; prefix: string }>;
      expect(keys.map((k) => k.id)).toEqual([s.org.ctx.actor.id]);
      s.keys.set(s.org.ctx.actor.id, {
        id: s.org.ctx.actor.id,
        prefix: keys[0]?.prefix ?? '',
        secret: s.org.key,
        primary: true,
        revoked: false,
      });
      for (let i = 0; i < SEED_MEMORIES; i++) await createMemory(s, s.org.auth);
      await createKey(s, s.org.auth);
    }

    type Op = (x: Side, y: Side, auth: { authorization: string }) => Promise<void>;
    const yMemoryId = (y: Side) =>
      y.deleted.size > 0 && chance(0.2) ? pick([...y.deleted]) : pick([...y.alive.keys()]);
    const notFound = (res: LightMyRequestResponse, code: string) => {
      expect(res.statusCode, msg(res.body)).toBe(404);
      expect(res.json().error.code, msg(res.body)).toBe(code);
    };

    const ops: Record<string, Op> = {
      'cross get': async (x, y, auth) => {
        const id = yMemoryId(y);
        const res = await inject(auth, 'GET', `/v1/memories/${id}`);
        if (t.config.auditReads) audit(x, id);
        notFound(res, 'MEMORY_NOT_FOUND');
        expectNoLeak(res, y, id);
      },
      'cross patch': async (x, y, auth) => {
        const id = yMemoryId(y);
        const target = y.alive.get(id);
        const payload = pick<object>([
          { content: `${x.marker} overwritten by ${x.name}` },
          { tags: ['pwned'] },
          { metadata: { team: 'pwned' } },
          { content: 'pwned', expectedVersion: target?.version ?? 1 },
          { tags: ['pwned'], expectedVersion: (target?.version ?? 1) + 1 },
        ]);
        const res = await inject(auth, 'PATCH', `/v1/memories/${id}`, payload);
        audit(x, id);
        notFound(res, 'MEMORY_NOT_FOUND');
        expectNoLeak(res, y, id);
      },
      'cross delete': async (x, y, auth) => {
        const id = yMemoryId(y);
        const res = await inject(auth, 'DELETE', `/v1/memories/${id}`);
        audit(x, id);
        notFound(res, 'MEMORY_NOT_FOUND');
        expectNoLeak(res, y, id);
      },
      'cross history': async (x, y, auth) => {
        const id = yMemoryId(y);
        const res = await inject(auth, 'GET', `/v1/memories/${id}/history`);
        if (t.config.auditReads) audit(x, id);
        notFound(res, 'MEMORY_NOT_FOUND');
        expectNoLeak(res, y, id);
      },
      'cross search': async (x, y, auth) => {
        const payload = {
          query: pick([y.marker, `${y.marker} ${pick(WORDS)}`, pick(WORDS)]),
          mode: pick(['lexical', 'vector', 'hybrid'] as const),
          limit: 50,
          ...(chance(0.3) ? { scope: { user: pick(USERS) } } : {}),
        };
        const res = await inject(auth, 'POST', '/v1/memories/search', payload);
        expect(res.statusCode, msg(res.body)).toBe(200);
        for (const hit of res.json().results as Array<{ memory: { id: string } }>) {
          expect(x.alive.has(hit.memory.id), msg(`search hit ${hit.memory.id} is not a live memory of ${x.name}`)).toBe(
            true,
          );
        }
        expectNoLeak(res, y);
      },
      'filtered list': async (x, y, auth) => {
        const f: Filter = {
          ...(chance(0.5) ? { user: pick(USERS) } : {}),
          ...(chance(0.4) ? { project: pick(PROJECTS) } : {}),
          ...(chance(0.4) ? { tags: randomTags() } : {}),
          ...(chance(0.3) ? { team: pick(TEAMS) } : {}),
        };
        const res = await inject(auth, 'GET', `/v1/memories?${listQuery(f)}`);
        expect(res.statusCode, msg(res.body)).toBe(200);
        const ids = (res.json().items as Array<{ id: string }>).map((m) => m.id).sort();
        const expected = [...x.alive.values()].filter((m) => matches(m, f)).map((m) => m.id);
        expect(ids, msg(`list ${JSON.stringify(f)}`)).toEqual(expected.sort());
        expect(res.json().nextCursor, msg('list fits one page')).toBeNull();
        expectNoLeak(res, y);
      },
      'cross revoke key': async (x, y, auth) => {
        const id = pick([...y.keys.keys()]);
        const res = await inject(auth, 'DELETE', `/v1/keys/${id}`);
        audit(x, id);
        notFound(res, 'API_KEY_NOT_FOUND');
        expectNoLeak(res, y, id);
      },
      'cross audit': async (x, y, auth) => {
        const id = chance(0.8) ? yMemoryId(y) : pick([...y.keys.keys()]);
        const res = await inject(auth, 'GET', `/v1/audit?resourceId=${id}&limit=500`);
        expect(res.statusCode, msg(res.body)).toBe(200);
        const items = res.json().items as Array<{
          actor: { id: string };
          resource: { id: string };
          outcome: string;
          status: number;
        }>;
        // Only x's own refused attempts on that id may show, and each of them must.
        expect(items.length, msg(`audit entries of ${x.name} for ${id}`)).toBe(x.audited.get(id) ?? 0);
        for (const e of items) {
          expect(x.keys.has(e.actor.id), msg(`audit actor ${e.actor.id} is not a key of ${x.name}`)).toBe(true);
          expect([e.resource.id, e.outcome, e.status], msg('audit entry')).toEqual([id, 'failure', 404]);
        }
        expectNoLeak(res, y, id);
      },
      'own create': async (x, y, auth) => {
        await createMemory(x, auth);
      },
      'own patch': async (x, y, auth) => {
        const m = pick([...x.alive.values()]);
        const next = {
          content: chance(0.5) ? newContent(x) : m.content,
          tags: chance(0.5) ? randomTags() : m.tags,
          team: chance(0.3) ? pick(TEAMS) : m.team,
        };
        const payload = {
          ...(next.content === m.content ? {} : { content: next.content }),
          ...(next.tags === m.tags ? {} : { tags: next.tags }),
          metadata: { team: next.team },
          ...(chance(0.5) ? { expectedVersion: m.version } : {}),
        };
        const res = await inject(auth, 'PATCH', `/v1/memories/${m.id}`, payload);
        audit(x, m.id);
        expect(res.statusCode, msg(res.body)).toBe(200);
        Object.assign(m, next, { version: m.version + 1 });
        expectMemory(res.json(), m);
        expectNoLeak(res, y);
      },
      'own delete': async (x, y, auth) => {
        if (x.alive.size <= MIN_ALIVE) return;
        const id = pick([...x.alive.keys()]);
        const res = await inject(auth, 'DELETE', `/v1/memories/${id}`);
        audit(x, id);
        expect(res.statusCode, msg(res.body)).toBe(204);
        x.alive.delete(id);
        x.deleted.add(id);
      },
      'own get': async (x, y, auth) => {
        const m = pick([...x.alive.values()]);
        const res = await inject(auth, 'GET', `/v1/memories/${m.id}`);
        if (t.config.auditReads) audit(x, m.id);
        expect(res.statusCode, msg(res.body)).toBe(200);
        expectMemory(res.json(), m);
        expectNoLeak(res, y);
      },
      'own key': async (x, y, auth) => {
        const extra = [...x.keys.values()].filter((k) => !k.primary && !k.revoked);
        if (x.keys.size < MAX_KEYS && (extra.length === 0 || chance(0.5))) return createKey(x, auth);
        if (extra.length === 0) return;
        const k = pick(extra);
        const res = await inject(auth, 'DELETE', `/v1/keys/${k.id}`);
        audit(x, k.id);
        expect(res.statusCode, msg(res.body)).toBe(200);
        expect(res.json().revokedAt, msg('revoked key')).not.toBeNull();
        k.revoked = true;
        expect((await inject(authOf(k), 'GET', '/v1/me')).statusCode, msg('revoked key still works')).toBe(401);
      },
    };
    const weights: Record<keyof typeof ops, number> = {
      'cross get': 3,
      'cross patch': 3,
      'cross delete': 3,
      'cross history': 2,
      'cross search': 2,
      'filtered list': 2,
      'cross revoke key': 2,
      'cross audit': 2,
      'own create': 3,
      'own patch': 3,
      'own delete': 2,
      'own get': 1,
      'own key': 1,
    };
    const deck = Object.entries(weights).flatMap(([name, w]) => Array.from({ length: w }, () => name));
    const ran = new Map<string, number>();

    for (let step = 0; step < STEPS; step++) {
      const x = chance(0.5) ? a : b;
      const name = pick(deck);
      // Any of x's live keys acts, not only the one makeOrg issued.
      const key = pick(liveKeys(x));
      where = `seed=${seed} step=${step} org ${x.name} ${name} with key ${key.id}`;
      await ops[name]?.(x, other(x), authOf(key));
      ran.set(name, (ran.get(name) ?? 0) + 1);
    }
    where = `seed=${seed} final check`;
    // A sequence that skipped a kind of call proves nothing about it.
    for (const name of Object.keys(ops)) expect(ran.get(name) ?? 0, msg(`${name} ran`)).toBeGreaterThan(0);

    for (const s of [a, b]) {
      const y = other(s);
      // Every memory the org did not delete itself is exactly as it last wrote it.
      for (const m of s.alive.values()) {
        const res = await inject(s.org.auth, 'GET', `/v1/memories/${m.id}`);
        expect(res.statusCode, msg(res.body)).toBe(200);
        expectMemory(res.json(), m);
        const hist = await inject(s.org.auth, 'GET', `/v1/memories/${m.id}/history`);
        const versions = hist.json().versions as Array<{ version: number; content: string }>;
        expect(
          versions.map((v) => v.version),
          msg(`history of ${m.id}`),
        ).toEqual(Array.from({ length: m.version }, (_, i) => i + 1));
        expect(versions.at(-1)?.content, msg(`history of ${m.id}`)).toBe(m.content);
        expectNoLeak(hist, y);
      }
      for (const id of s.deleted) {
        notFound(await inject(s.org.auth, 'GET', `/v1/memories/${id}`), 'MEMORY_NOT_FOUND');
      }
      const list = await inject(s.org.auth, 'GET', '/v1/memories?limit=100');
      expect((list.json().items as Array<{ id: string }>).map((m) => m.id).sort(), msg(`list of ${s.name}`)).toEqual(
        [...s.alive.keys()].sort(),
      );
      expectNoLeak(list, y);

      // Keys: revoked exactly when the org itself revoked them, and the live ones still work.
      const keys = await inject(s.org.auth, 'GET', '/v1/keys');
      expect(
        (keys.json().items as Array<{ id: string; revokedAt: string | null }>)
          .map((k) => [k.id, k.revokedAt !== null] as const)
          .sort(),
        msg(`keys of ${s.name}`),
      ).toEqual([...s.keys.values()].map((k) => [k.id, k.revoked] as const).sort());
      expectNoLeak(keys, y);
      for (const k of s.keys.values()) {
        const me = await inject(authOf(k), 'GET', '/v1/me');
        expect(me.statusCode, msg(`key ${k.id} of ${s.name}`)).toBe(k.revoked ? 401 : 200);
        if (!k.revoked) expect(me.json().orgId, msg(`key ${k.id} of ${s.name}`)).toBe(s.org.orgId);
      }

      // The org's audit chain holds exactly its own entries for every id either org used.
      for (const id of [
        ...a.alive.keys(),
        ...a.deleted,
        ...a.keys.keys(),
        ...b.alive.keys(),
        ...b.deleted,
        ...b.keys.keys(),
      ]) {
        const res = await inject(s.org.auth, 'GET', `/v1/audit?resourceId=${id}&limit=500`);
        const items = res.json().items as Array<{ actor: { id: string } }>;
        expect(items.length, msg(`audit entries of ${s.name} for ${id}`)).toBe(s.audited.get(id) ?? 0);
        for (const e of items) expect(s.keys.has(e.actor.id), msg(`audit actor ${e.actor.id} in ${s.name}`)).toBe(true);
      }
      const verify = await inject(s.org.auth, 'GET', '/v1/audit/verify');
      expect(verify.statusCode, msg(verify.body)).toBe(200);
      expect(verify.json(), msg(`audit chain of ${s.name}`)).toMatchObject({ ok: true, problems: [] });
      expect(verify.json().entries, msg(`audit chain of ${s.name}`)).toBeGreaterThan(0);
    }

    // The store itself, read past RLS, agrees with both models row for row.
    const db = t.engram.database.adminDb;
    const orgs = [a.org.orgId, b.org.orgId];
    const rows = await sql<{ org_id: string; id: string; content: string; version: number }>`
      SELECT org_id, id, content, version FROM memories WHERE org_id = ANY(${orgs}::uuid[])`.execute(db);
    const expectedRows = [a, b].flatMap((s) =>
      [...s.alive.values()].map((m) => ({ org_id: s.org.orgId, id: m.id, content: m.content, version: m.version })),
    );
    const byId = (r: { id: string }, q: { id: string }) => r.id.localeCompare(q.id);
    expect(rows.rows.sort(byId), msg('memories rows')).toEqual(expectedRows.sort(byId));

    const history = await sql<{ org_id: string; n: number }>`
      SELECT org_id, count(*)::int AS n FROM memory_history WHERE org_id = ANY(${orgs}::uuid[]) GROUP BY org_id`.execute(
      db,
    );
    const historyOf = (s: Side) => [...s.alive.values()].reduce((n, m) => n + m.version - 1, 0);
    expect(Object.fromEntries(history.rows.map((r) => [r.org_id, r.n])), msg('memory_history rows per org')).toEqual(
      Object.fromEntries([a, b].map((s) => [s.org.orgId, historyOf(s)]).filter(([, n]) => n !== 0)),
    );

    const keyRows = await sql<{ org_id: string; id: string; revoked: boolean }>`
      SELECT org_id, id, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE org_id = ANY(${orgs}::uuid[])`.execute(
      db,
    );
    expect(keyRows.rows.sort(byId), msg('api_keys rows')).toEqual(
      [a, b]
        .flatMap((s) => [...s.keys.values()].map((k) => ({ org_id: s.org.orgId, id: k.id, revoked: k.revoked })))
        .sort(byId),
    );

    for (const s of [a, b]) {
      const y = other(s);
      const foreign = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM audit_log
        WHERE org_id = ${s.org.orgId} AND actor_id = ANY(${[...y.keys.keys()]}::text[])`.execute(db);
      expect(foreign.rows[0]?.n, msg(`audit entries of ${s.name} written by keys of ${y.name}`)).toBe(0);
      const won = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM audit_log
        WHERE org_id = ${s.org.orgId} AND outcome = 'success'
          AND resource_id = ANY(${[...y.alive.keys(), ...y.deleted, ...y.keys.keys()]}::text[])`.execute(db);
      expect(won.rows[0]?.n, msg(`successful calls of ${s.name} on resources of ${y.name}`)).toBe(0);
    }
  });
});
