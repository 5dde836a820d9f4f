import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type JwtConfig } from '../config/config.ts';
import { jwtEnv, signingKey, TEST_AUDIENCE, TEST_ISSUER, type SigningKey } from '../../test/helpers/tokens.ts';
import { JwtVerifier } from './jwt-verifier.ts';

describe(JwtVerifier.name, () => {
  let key: SigningKey;
  const now = () => Math.floor(Date.now() / 1000);
  const config = (env: Record<string, string> = {}): JwtConfig => {
    const jwt = loadConfig({ ...jwtEnv(key), ...env }).auth.jwt;
    if (jwt === undefined) throw new Error('JWT verification is off');
    return jwt;
  };
  /** A token with exactly these times and header typ (mintToken always stamps iat = now). */
  const token = (o: { iat?: number; exp: number; typ?: string }) => {
    const jwt = new SignJWT({ org_id: 'org-1' })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, ...(o.typ === undefined ? {} : { typ: o.typ }) })
      .setIssuer(TEST_ISSUER)
      .setAudience(TEST_AUDIENCE)
      .setSubject('user-1')
      .setExpirationTime(o.exp);
    if (o.iat !== undefined) jwt.setIssuedAt(o.iat);
    return jwt.sign(key.privateKey);
  };
  const refusal = (v: JwtVerifier, t: string) =>
    v.verify(t, 'Bearer').then(
      () => 'accepted',
      (e: Error) => e.message,
    );

  beforeAll(async () => {
    key = await signingKey('EdDSA', 'k-1');
  });

  it('refuses a token issued in the future beyond the clock skew, and one without iat', async () => {
    const v = new JwtVerifier(config());
    expect(await refusal(v, await token({ iat: now() + 600, exp: now() + 900 }))).toMatch(/issued in the future/);
    expect(await refusal(v, await token({ iat: now() + 10, exp: now() + 900 }))).toBe('accepted');
    expect(await refusal(v, await token({ exp: now() + 900 }))).toMatch(/iat/);
  });

  it('refuses a token older than AUTH_MAX_TOKEN_AGE_SECONDS, whatever its exp says', async () => {
    const v = new JwtVerifier(config({ AUTH_MAX_TOKEN_AGE_SECONDS: '3600' }));
    expect(await refusal(v, await token({ iat: now() - 7200, exp: now() + 86_400 * 365 }))).toMatch(
      /older than this server accepts/,
    );
    expect(await refusal(v, await token({ iat: now() - 600, exp: now() + 600 }))).toBe('accepted');
  });

  it('accepts typ at+jwt (RFC 9068) and, with AUTH_REQUIRE_AT_JWT, refuses anything else, such as an ID token', async () => {
    const lax = new JwtVerifier(config());
    const strict = new JwtVerifier(config({ AUTH_REQUIRE_AT_JWT: 'true' }));
    for (const typ of ['at+jwt', 'application/at+jwt']) {
      const t = await token({ iat: now(), exp: now() + 300, typ });
      expect(await refusal(lax, t), typ).toBe('accepted');
      expect(await refusal(strict, t), typ).toBe('accepted');
    }
    const idToken = await token({ iat: now(), exp: now() + 300, typ: 'JWT' });
    expect(await refusal(lax, idToken)).toBe('accepted');
    expect(await refusal(strict, idToken)).toMatch(/not an access token \(typ/);
  });
});
