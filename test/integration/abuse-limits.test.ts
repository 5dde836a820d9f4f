import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

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
