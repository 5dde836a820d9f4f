import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { LocalCache } from '../storage/local/local-cache.ts';
import { LocalReplayCaches } from '../storage/local/local-replay-caches.ts';
import { ValkeyCache } from '../storage/valkey/valkey-cache.ts';
import { AuthError } from './auth-error.ts';
import { DpopVerifier, type DpopProofInput, type DpopVerifierOptions } from './dpop.ts';

const NOW_MS = 1_750_000_000_000;
const NOW = NOW_MS / 1000;
const URL_ = 'https://api.engram.test/mcp';
const TOKEN = 'at-0123456789';
const ATH = base64url.encode(createHash('sha256').update(TOKEN).digest());

interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly jkt: string;
}

async function keyPair(alg: 'ES256' | 'EdDSA'): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

interface ProofOptions {
  readonly alg?: string;
  readonly typ?: string;
  /** The header jwk; null leaves it out. */
  readonly jwk?: JWK | null;
  readonly signWith?: CryptoKey | Uint8Array;
  readonly claims?: Record<string, unknown>;
}

/** A DPoP proof for GET URL_ at NOW from `key`; `options` bend one part of it. */
function proof(key: KeyPair, options: ProofOptions = {}): Promise<string> {
  const jwk = options.jwk === undefined ? key.publicJwk : options.jwk;
  return new SignJWT({ jti: randomUUID(), htm: 'GET', htu: URL_, iat: NOW, ...options.claims })
    .setProtectedHeader({
      alg: options.alg ?? (key.publicJwk.crv === 'Ed25519' ? 'EdDSA' : 'ES256'),
      typ: options.typ ?? 'dpop+jwt',
      ...(jwk === null ? {} : { jwk }),
    })
    .sign(options.signWith ?? key.privateKey);
}

/** Runs `promise`, expecting an AuthError; returns it. */
async function refusal(promise: Promise<unknown>): Promise<AuthError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuthError);
  return error as AuthError;
}

/** Expects `promise` to fail as invalid_dpop_proof with a message containing `fragment`. */
async function expectInvalidProof(promise: Promise<unknown>, fragment: string): Promise<void> {
  const error = await refusal(promise);
  expect(error.challenge.error).toBe('invalid_dpop_proof');
  expect(error.challenge.scheme).toBe('DPoP');
  expect(error.message).toContain(fragment);
}

describe(DpopVerifier.name, () => {
  let es256: KeyPair;
  let ed25519: KeyPair;
  let other: KeyPair;
  let verifier: DpopVerifier;
  let clock: number;

  const make = (options: Partial<DpopVerifierOptions> = {}): DpopVerifier =>
    new DpopVerifier({ replayCache: new LocalCache(), now: () => clock, ...options });
  const input = (value: string, rest: Partial<DpopProofInput> = {}): DpopProofInput => ({
    proof: value,
    method: 'GET',
    url: URL_,
    ...rest,
  });

  beforeAll(async () => {
    [es256, ed25519, other] = await Promise.all([keyPair('ES256'), keyPair('EdDSA'), keyPair('ES256')]);
  });

  beforeEach(() => {
    clock = NOW_MS;
    verifier = make();
  });

  describe('constructor', () => {
    it('defaults to the asymmetric algorithms for the challenge', () => {
      expect(verifier.algorithms).toEqual(['EdDSA', 'ES256', 'RS256', 'PS256', 'ES384']);
    });

    it('refuses none and HMAC algorithms in the allow-list', () => {
      expect(() => make({ algorithms: ['ES256', 'HS256'] })).toThrow(TypeError);
      expect(() => make({ algorithms: ['none'] })).toThrow(TypeError);
    });
  });

  describe('verify', () => {
    it('returns the thumbprint, jti and iat of a valid ES256 proof', async () => {
      const value = await proof(es256, { claims: { jti: 'proof-1' } });
      await expect(verifier.verify(input(value))).resolves.toEqual({ jkt: es256.jkt, jti: 'proof-1', iat: NOW });
    });

    it('returns the thumbprint of a valid EdDSA proof', async () => {
      const result = await verifier.verify(input(await proof(ed25519)));
      expect(result.jkt).toBe(ed25519.jkt);
    });

    it('accepts a proof with a matching ath and cnf.jkt', async () => {
      const value = await proof(es256, { claims: { ath: ATH } });
      const result = await verifier.verify(input(value, { accessToken: TOKEN, expectedJkt: es256.jkt }));
      expect(result.jkt).toBe(es256.jkt);
    });

    it('ignores the query and fragment of htu', async () => {
      const value = await proof(es256, { claims: { htu: `${URL_}?a=1#frag` } });
      await expect(verifier.verify(input(value, { url: `${URL_}?b=2` }))).resolves.toMatchObject({ jkt: es256.jkt });
    });

    it('treats an explicit default port and upper-case host as the same URL', async () => {
      const value = await proof(es256, { claims: { htu: 'https://H.example:443/x' } });
      await expect(verifier.verify(input(value, { url: 'https://h.example/x' }))).resolves.toMatchObject({
        jkt: es256.jkt,
      });
    });

    it('refuses a value with two proofs', async () => {
      const value = await proof(es256);
      await expectInvalidProof(verifier.verify(input(`${value}, ${value}`)), 'exactly one DPoP proof');
    });

    it('refuses a value that is not a compact JWS', async () => {
      await expectInvalidProof(verifier.verify(input('not-a-jws')), 'not a compact JWS');
    });

    it('refuses a proof whose typ is not dpop+jwt', async () => {
      await expectInvalidProof(verifier.verify(input(await proof(es256, { typ: 'JWT' }))), 'typ must be dpop+jwt');
    });

    it('refuses an unsigned proof (alg none)', async () => {
      const encode = (part: object) => base64url.encode(JSON.stringify(part));
      const header = encode({ alg: 'none', typ: 'dpop+jwt', jwk: es256.publicJwk });
      const payload = encode({ jti: randomUUID(), htm: 'GET', htu: URL_, iat: NOW });
      await expectInvalidProof(verifier.verify(input(`${header}.${payload}.`)), 'alg none is not allowed');
    });

    it('refuses an HS256 proof', async () => {
      const secret = new Uint8Array(32).fill(7);
      const value = await proof(es256, { alg: 'HS256', signWith: secret });
      await expectInvalidProof(verifier.verify(input(value)), 'alg HS256 is not allowed');
    });

    it('refuses an algorithm outside the allow-list', async () => {
      const strict = make({ algorithms: ['ES256'] });
      await expectInvalidProof(strict.verify(input(await proof(ed25519))), 'alg EdDSA is not supported');
    });

    it('refuses a proof without a jwk header', async () => {
      await expectInvalidProof(verifier.verify(input(await proof(es256, { jwk: null }))), 'missing jwk');
    });

    it('refuses a proof whose jwk is a private key', async () => {
      const privateJwk = await exportJWK(es256.privateKey);
      expect(privateJwk.d).toBeDefined();
      const value = await proof(es256, { jwk: privateJwk });
      await expectInvalidProof(verifier.verify(input(value)), 'jwk must be a public key');
    });

    it('refuses a proof signed with another key than the embedded jwk', async () => {
      const value = await proof(es256, { signWith: other.privateKey });
      await expectInvalidProof(verifier.verify(input(value)), 'signature does not verify');
    });

    it('refuses a proof for another method', async () => {
      await expectInvalidProof(verifier.verify(input(await proof(es256), { method: 'POST' })), 'htm does not match');
    });

    it('refuses a lower-case htm (methods compare case-sensitively)', async () => {
      const value = await proof(es256, { claims: { htm: 'get' } });
      await expectInvalidProof(verifier.verify(input(value)), 'htm does not match');
    });

    it('refuses a proof for another path', async () => {
      const value = await proof(es256, { claims: { htu: 'https://api.engram.test/other' } });
      await expectInvalidProof(verifier.verify(input(value)), 'htu does not match');
    });

    it('refuses a proof for another host', async () => {
      const value = await proof(es256, { claims: { htu: 'https://evil.test/mcp' } });
      await expectInvalidProof(verifier.verify(input(value)), 'htu does not match');
    });

    it('refuses a proof for another scheme', async () => {
      const value = await proof(es256, { claims: { htu: 'http://api.engram.test/mcp' } });
      await expectInvalidProof(verifier.verify(input(value)), 'htu does not match');
    });

    it('refuses a proof older than the iat window', async () => {
      const value = await proof(es256, { claims: { iat: NOW - 61 } });
      await expectInvalidProof(verifier.verify(input(value)), 'iat is too far in the past');
    });

    it('refuses a proof issued in the future beyond the iat window', async () => {
      const value = await proof(es256, { claims: { iat: NOW + 61 } });
      await expectInvalidProof(verifier.verify(input(value)), 'iat is in the future');
    });

    it('accepts a proof at the edge of the iat window', async () => {
      const value = await proof(es256, { claims: { iat: NOW - 60 } });
      await expect(verifier.verify(input(value))).resolves.toMatchObject({ iat: NOW - 60 });
    });

    it('refuses a proof without jti', async () => {
      await expectInvalidProof(
        verifier.verify(input(await proof(es256, { claims: { jti: undefined } }))),
        'missing jti',
      );
    });

    it('refuses a jti longer than 256 characters', async () => {
      const value = await proof(es256, { claims: { jti: 'x'.repeat(257) } });
      await expectInvalidProof(verifier.verify(input(value)), 'jti is longer than 256');
    });

    it('refuses a replayed jti', async () => {
      const value = await proof(es256);
      await verifier.verify(input(value));
      await expectInvalidProof(verifier.verify(input(value)), 'replayed jti');
    });

    it('keeps each tenant’s jtis apart: a flood of proofs for one cannot evict another’s', async () => {
      const v = make({ replayCache: new LocalReplayCaches({ perPartition: 8, maxPartitions: 10, now: () => clock }) });
      const value = await proof(es256);
      await v.verify(input(value, { partition: 'org-a' }));
      for (let i = 0; i < 20; i++) await v.verify(input(await proof(other), { partition: 'org-b' }));
      await expectInvalidProof(v.verify(input(value, { partition: 'org-a' })), 'replayed jti');
    });

    it('charges the tenant before storing a jti, and a refused proof stores none', async () => {
      let open = false;
      const v = make({
        admit: (partition) => {
          if (!open) throw new AppError('RATE_LIMITED', `too many proofs for ${partition}`);
          return Promise.resolve();
        },
      });
      const value = await proof(es256);
      await expect(v.verify(input(value, { partition: 'org-a' }))).rejects.toMatchObject({ code: 'RATE_LIMITED' });
      open = true;
      await expect(v.verify(input(value, { partition: 'org-a' }))).resolves.toMatchObject({ jkt: es256.jkt });
    });

    it('fails closed with UNAVAILABLE when the replay cache is unreachable', async () => {
      // A real Valkey client aimed at a port where nothing listens.
      const down = new ValkeyCache('redis://127.0.0.1:1', { commandTimeoutMs: 200 });
      try {
        const err = await make({ replayCache: down })
          .verify(input(await proof(es256)))
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'UNAVAILABLE', message: 'The DPoP replay cache is unavailable' });
      } finally {
        await down.close();
      }
    });

    it('does not burn the jti of a refused proof', async () => {
      const value = await proof(es256, { claims: { ath: ATH } });
      await expectInvalidProof(verifier.verify(input(value, { method: 'POST' })), 'htm does not match');
      await expect(verifier.verify(input(value, { accessToken: TOKEN }))).resolves.toMatchObject({ jkt: es256.jkt });
    });

    it('refuses a proof without ath when an access token is presented', async () => {
      await expectInvalidProof(verifier.verify(input(await proof(es256), { accessToken: TOKEN })), 'missing ath');
    });

    it('refuses a proof whose ath is for another token', async () => {
      const value = await proof(es256, { claims: { ath: ATH } });
      await expectInvalidProof(verifier.verify(input(value, { accessToken: 'another' })), 'ath does not match');
    });

    it('refuses a proof from another key than the token binding', async () => {
      const value = await proof(other, { claims: { ath: ATH } });
      await expectInvalidProof(
        verifier.verify(input(value, { accessToken: TOKEN, expectedJkt: es256.jkt })),
        'DPoP proof key does not match the token binding (cnf.jkt)',
      );
    });

    describe('with server nonces', () => {
      const windowSeconds = 300;
      let nonced: DpopVerifier;

      beforeEach(() => {
        nonced = make({ nonce: { secret: new Uint8Array(32).fill(1), windowSeconds } });
      });

      it('returns no nonce when nonces are off', () => {
        expect(verifier.currentNonce()).toBeUndefined();
      });

      it('refuses a proof without a nonce with use_dpop_nonce', async () => {
        const error = await refusal(nonced.verify(input(await proof(es256))));
        expect(error.challenge.error).toBe('use_dpop_nonce');
        expect(error.message).toContain('DPoP-Nonce');
      });

      it('accepts the current nonce', async () => {
        const nonce = nonced.currentNonce();
        expect(nonce).toEqual(expect.any(String));
        await expect(nonced.verify(input(await proof(es256, { claims: { nonce } })))).resolves.toMatchObject({
          jkt: es256.jkt,
        });
      });

      it('accepts a nonce from the previous window', async () => {
        const nonce = nonced.currentNonce();
        clock += windowSeconds * 1000;
        const value = await proof(es256, { claims: { nonce, iat: clock / 1000 } });
        await expect(nonced.verify(input(value))).resolves.toMatchObject({ jkt: es256.jkt });
      });

      it('refuses a nonce from two windows ago with use_dpop_nonce', async () => {
        const nonce = nonced.currentNonce();
        clock += 2 * windowSeconds * 1000;
        const value = await proof(es256, { claims: { nonce, iat: clock / 1000 } });
        const error = await refusal(nonced.verify(input(value)));
        expect(error.challenge.error).toBe('use_dpop_nonce');
      });

      it('refuses a nonce made with another secret with use_dpop_nonce', async () => {
        const foreign = make({ nonce: { secret: new Uint8Array(32).fill(2), windowSeconds } }).currentNonce();
        const error = await refusal(nonced.verify(input(await proof(es256, { claims: { nonce: foreign } }))));
        expect(error.challenge.error).toBe('use_dpop_nonce');
      });
    });
  });
});
