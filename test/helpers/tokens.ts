import { createHash, randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';

/**
 * A stand-in identity provider for tests: it owns signing keys, publishes
 * them as a JWKS and mints access tokens; plus DPoP client keys that mint
 * proofs. Everything is real jose crypto — only the IdP's HTTP endpoints are
 * absent, because tests hand Engram the JWKS inline (AUTH_JWKS).
 */
export const TEST_ISSUER = 'https://idp.engram.test';
export const TEST_AUDIENCE = 'https://engram.test';
export const TEST_PUBLIC_URL = 'https://engram.test';

export interface SigningKey {
  readonly kid: string;
  readonly alg: 'EdDSA' | 'ES256' | 'RS256';
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function signingKey(alg: SigningKey['alg'], kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export const jwksOf = (...keys: SigningKey[]): string => JSON.stringify({ keys: keys.map((k) => k.publicJwk) });

/** Env for an Engram that trusts `keys` as its IdP's. */
export const jwtEnv = (...keys: SigningKey[]): Record<string, string> => ({
  AUTH_JWKS: jwksOf(...keys),
  AUTH_ISSUER: TEST_ISSUER,
  AUTH_AUDIENCE: TEST_AUDIENCE,
  PUBLIC_URL: TEST_PUBLIC_URL,
});

export interface TokenOptions {
  readonly sub?: string;
  readonly org?: string;
  readonly scope?: string;
  readonly roles?: readonly string[];
  readonly jkt?: string;
  readonly iss?: string;
  readonly aud?: string;
  /** Seconds from now; negative for an expired token. */
  readonly expiresIn?: number;
  readonly notBefore?: number;
  readonly extra?: JWTPayload;
  readonly typ?: string;
}

export async function mintToken(key: SigningKey, o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = {
    ...(o.org === undefined ? {} : { org_id: o.org }),
    ...(o.scope === undefined ? {} : { scope: o.scope }),
    ...(o.roles === undefined ? {} : { roles: [...o.roles] }),
    ...(o.jkt === undefined ? {} : { cnf: { jkt: o.jkt } }),
    ...o.extra,
  };
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: o.typ ?? 'at+jwt' })
    .setIssuer(o.iss ?? TEST_ISSUER)
    .setAudience(o.aud ?? TEST_AUDIENCE)
    .setSubject(o.sub ?? 'user-1')
    .setIssuedAt(now)
    .setExpirationTime(now + (o.expiresIn ?? 300));
  if (o.notBefore !== undefined) jwt.setNotBefore(now + o.notBefore);
  return jwt.sign(key.privateKey);
}

export interface DpopClient {
  readonly jkt: string;
  proof(o: {
    htm: string;
    htu: string;
    accessToken?: string;
    iat?: number;
    jti?: string;
    nonce?: string;
  }): Promise<string>;
}

export async function dpopClient(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<DpopClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return {
    jkt: await calculateJwkThumbprint(jwk, 'sha256'),
    proof: (o) =>
      new SignJWT({
        htm: o.htm,
        htu: o.htu,
        jti: o.jti ?? randomUUID(),
        ...(o.accessToken === undefined ? {} : { ath: createHash('sha256').update(o.accessToken).digest('base64url') }),
        ...(o.nonce === undefined ? {} : { nonce: o.nonce }),
      })
        .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk })
        .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
        .sign(privateKey),
  };
}
