import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import {
  EmbeddedJWK,
  base64url,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWK,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';
import type { Cache } from '../ports/cache.ts';
import { errors } from '../errors.ts';
import { authErrors } from './auth-error.ts';

/** How a `DpopVerifier` checks proofs. Only `replayCache` is required. */
export interface DpopVerifierOptions {
  /** Accepted proof algorithms; asymmetric only. Default ['EdDSA', 'ES256', 'RS256', 'PS256', 'ES384']. */
  readonly algorithms?: readonly string[];
  /** How far a proof's iat may be from now, in seconds (both directions). Default 60. */
  readonly iatWindowSeconds?: number;
  /**
   * jti replay cache: one `Cache` (Valkey across replicas; keys carry the
   * partition), or one cache per partition (in-process, `LocalReplayCaches`),
   * so one tenant's proofs cannot evict another's.
   */
  readonly replayCache: Cache | ReplayPartitions;
  /**
   * Called with the proof's partition just before its jti is stored; throws
   * (e.g. RATE_LIMITED) to refuse the proof, which then stores nothing.
   */
  readonly admit?: ((partition: string) => Promise<void>) | undefined;
  /** Key prefix in the replay cache. Default 'dpop:jti:'. */
  readonly replayKeyPrefix?: string;
  /**
   * When set, proofs must carry a server nonce (RFC 9449 §8). Nonces are
   * stateless: HMAC-SHA256(secret, time window) base64url, valid for the
   * current and previous window.
   */
  readonly nonce?: { readonly secret: Uint8Array; readonly windowSeconds?: number } | undefined;
  /** Clock, for tests. Default Date.now. */
  readonly now?: () => number;
}

/** Replay caches per partition (tenant). */
export interface ReplayPartitions {
  cacheFor(partition: string): Cache;
}

/** One DPoP proof and the request it arrived with. */
export interface DpopProofInput {
  /** The DPoP header value. */
  readonly proof: string;
  /** HTTP method of the request. */
  readonly method: string;
  /** Absolute request URL as the client addressed it (scheme://host[:port]/path?query). */
  readonly url: string;
  /** When present, `ath` is required and must match base64url(sha256(token)). */
  readonly accessToken?: string | undefined;
  /** cnf.jkt of the bound access token; the proof's jwk thumbprint must equal it. */
  readonly expectedJkt?: string | undefined;
  /** The tenant the access token names: its replay entries and its budget are its own. Default ''. */
  readonly partition?: string | undefined;
}

/** What a valid proof establishes: the key (by RFC 7638 thumbprint) and the proof's identity. */
export interface VerifiedDpopProof {
  readonly jkt: string;
  readonly jti: string;
  readonly iat: number;
}

const DEFAULT_ALGORITHMS = ['EdDSA', 'ES256', 'RS256', 'PS256', 'ES384'] as const;
const DEFAULT_IAT_WINDOW_SECONDS = 60;
const DEFAULT_NONCE_WINDOW_SECONDS = 300;
const DEFAULT_REPLAY_KEY_PREFIX = 'dpop:jti:';
// Slack on top of the 2 × iat window a jti must be remembered for, to cover
// clock skew between replicas and the cache.
const REPLAY_TTL_SLACK_SECONDS = 5;
const MAX_JTI_LENGTH = 256;
// Far above any legitimate proof (an RSA-8192 jwk is under 2 KiB); keeps a
// hostile header from reaching the JSON parser and WebCrypto.
const MAX_PROOF_LENGTH = 8192;
// JWK members that only private or symmetric keys carry (RFC 7517, RFC 7518 §6).
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
// Three base64url segments; the signature may be empty so that `alg: none`
// reaches the algorithm check and gets a specific refusal.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Verifies DPoP proofs (RFC 9449 §4.3) for the OAuth resource server: one
 * `verify` per request, refusing every defect with `invalid_dpop_proof` (or
 * `use_dpop_nonce` when a server nonce is required), and remembering each
 * accepted jti so a captured proof cannot be replayed.
 */
export class DpopVerifier {
  /** Algorithms for the `algs` parameter of the WWW-Authenticate challenge. */
  readonly algorithms: readonly string[];
  private readonly iatWindowSeconds: number;
  private readonly replayCache: Cache | ReplayPartitions;
  private readonly admit: ((partition: string) => Promise<void>) | undefined;
  private readonly replayKeyPrefix: string;
  private readonly nonce: NonceConfig | undefined;
  private readonly now: () => number;

  constructor(options: DpopVerifierOptions) {
    const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
    if (algorithms.length === 0) throw new TypeError('DpopVerifier needs at least one algorithm');
    for (const alg of algorithms) {
      if (isForbiddenAlgorithm(alg)) throw new TypeError(`DpopVerifier accepts asymmetric algorithms only, not ${alg}`);
    }
    this.algorithms = Object.freeze(algorithms);
    this.iatWindowSeconds = positive('iatWindowSeconds', options.iatWindowSeconds ?? DEFAULT_IAT_WINDOW_SECONDS);
    this.replayCache = options.replayCache;
    this.admit = options.admit;
    this.replayKeyPrefix = options.replayKeyPrefix ?? DEFAULT_REPLAY_KEY_PREFIX;
    this.nonce =
      options.nonce === undefined
        ? undefined
        : {
            secret: options.nonce.secret,
            windowSeconds: positive('nonce.windowSeconds', options.nonce.windowSeconds ?? DEFAULT_NONCE_WINDOW_SECONDS),
          };
    if (this.nonce !== undefined && this.nonce.secret.byteLength < 16) {
      throw new TypeError('DpopVerifier nonce.secret must be at least 16 bytes');
    }
    this.now = options.now ?? Date.now;
  }

  /**
   * Checks `input.proof` against the request and returns the proof key's
   * thumbprint. Throws an `AuthError` (invalid_dpop_proof or use_dpop_nonce)
   * for anything short of a valid, fresh, unreplayed proof.
   */
  async verify(input: DpopProofInput): Promise<VerifiedDpopProof> {
    const { proof } = input;
    if (proof.length === 0) throw authErrors.invalidDpopProof('the DPoP header is empty');
    if (/[\s,]/.test(proof)) throw authErrors.invalidDpopProof('expected exactly one DPoP proof');
    if (proof.length > MAX_PROOF_LENGTH) throw authErrors.invalidDpopProof('the proof is too large');
    if (!COMPACT_JWS.test(proof)) throw authErrors.invalidDpopProof('the proof is not a compact JWS');

    const header = this.checkHeader(proof);
    const jwk = header.jwk as JWK;
    const nowMs = this.now();
    const claims = await this.checkSignature(proof, nowMs);

    const jti = claims.jti;
    if (typeof jti !== 'string' || jti.length === 0) throw authErrors.invalidDpopProof('missing jti claim');
    if (jti.length > MAX_JTI_LENGTH) {
      throw authErrors.invalidDpopProof(`jti is longer than ${MAX_JTI_LENGTH} characters`);
    }

    // §4.3 item 8: the method compares case-sensitively.
    if (typeof claims.htm !== 'string') throw authErrors.invalidDpopProof('missing htm claim');
    if (claims.htm !== input.method) throw authErrors.invalidDpopProof('htm does not match the request method');

    if (typeof claims.htu !== 'string') throw authErrors.invalidDpopProof('missing htu claim');
    const htu = normalizeHtu(claims.htu);
    if (htu === undefined) throw authErrors.invalidDpopProof('htu is not an http(s) URL');
    if (htu !== normalizeHtu(input.url)) throw authErrors.invalidDpopProof('htu does not match the request URL');

    const iat = claims.iat;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw authErrors.invalidDpopProof('missing iat claim');
    const ageSeconds = nowMs / 1000 - iat;
    if (ageSeconds > this.iatWindowSeconds) throw authErrors.invalidDpopProof('iat is too far in the past');
    if (ageSeconds < -this.iatWindowSeconds) throw authErrors.invalidDpopProof('iat is in the future');

    if (input.accessToken !== undefined) {
      if (typeof claims.ath !== 'string') throw authErrors.invalidDpopProof('missing ath claim');
      if (claims.ath !== accessTokenHash(input.accessToken)) {
        throw authErrors.invalidDpopProof('ath does not match the access token');
      }
    }

    const jkt = await calculateJwkThumbprint(jwk, 'sha256');
    if (input.expectedJkt !== undefined && jkt !== input.expectedJkt) {
      throw authErrors.invalidDpopProof('DPoP proof key does not match the token binding (cnf.jkt)');
    }

    if (this.nonce !== undefined && !isCurrentNonce(this.nonce, claims.nonce, nowMs)) throw authErrors.useDpopNonce();

    // Last, so that a proof refused above does not burn its jti. A proof stays
    // acceptable from iat - window to iat + window, so remember it that long.
    // Fail closed: without the replay cache a proof cannot be shown to be fresh (503, not 500).
    // Charged before the store, so a tenant can only fill the cache as fast as its budget allows.
    const partition = input.partition ?? '';
    await this.admit?.(partition);
    const cache = 'cacheFor' in this.replayCache ? this.replayCache.cacheFor(partition) : this.replayCache;
    const stored = await cache
      .setIfAbsent(
        `${this.replayKeyPrefix}${encodeURIComponent(partition)}:${jkt}:${jti}`,
        Buffer.from('1'),
        2 * this.iatWindowSeconds + REPLAY_TTL_SLACK_SECONDS,
      )
      .catch((e: unknown) => {
        throw errors.unavailable('The DPoP replay cache', e);
      });
    if (!stored) throw authErrors.invalidDpopProof('replayed jti');

    return { jkt, jti, iat };
  }

  /** A fresh nonce for the DPoP-Nonce response header, or undefined when nonces are off. */
  currentNonce(): string | undefined {
    if (this.nonce === undefined) return undefined;
    return nonceFor(this.nonce, windowIndex(this.nonce, this.now()));
  }

  /** The header checks that need no key: typ, alg and the embedded jwk (§4.3 items 4–7). */
  private checkHeader(proof: string): ProtectedHeaderParameters {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(proof);
    } catch (cause) {
      throw authErrors.invalidDpopProof('the proof header is not a valid JOSE header', cause);
    }
    if (!isDpopTyp(header.typ)) throw authErrors.invalidDpopProof('typ must be dpop+jwt');
    const { alg } = header;
    if (typeof alg !== 'string' || alg.length === 0) throw authErrors.invalidDpopProof('missing alg');
    if (isForbiddenAlgorithm(alg)) {
      throw authErrors.invalidDpopProof(`alg ${alg} is not allowed; use an asymmetric algorithm`);
    }
    if (!this.algorithms.includes(alg)) throw authErrors.invalidDpopProof(`alg ${alg} is not supported`);
    const { jwk } = header;
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
      throw authErrors.invalidDpopProof('missing jwk header');
    }
    if (PRIVATE_JWK_MEMBERS.some((member) => Object.hasOwn(jwk, member))) {
      throw authErrors.invalidDpopProof('jwk must be a public key (it has private key members)');
    }
    return header;
  }

  /** Verifies the signature with the embedded jwk and returns the claims (§4.3 items 5–7). */
  private async checkSignature(proof: string, nowMs: number): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(proof, EmbeddedJWK, {
        algorithms: [...this.algorithms],
        // Proofs carry no exp; iat is checked above with the injected clock.
        // The date and tolerance only matter for a stray exp or nbf claim.
        currentDate: new Date(nowMs),
        clockTolerance: this.iatWindowSeconds,
      });
      return payload;
    } catch (cause) {
      if (cause instanceof joseErrors.JWSSignatureVerificationFailed) {
        throw authErrors.invalidDpopProof('the signature does not verify with the embedded jwk', cause);
      }
      if (cause instanceof joseErrors.JWTExpired) throw authErrors.invalidDpopProof('the proof has expired', cause);
      if (cause instanceof joseErrors.JWTClaimValidationFailed) {
        throw authErrors.invalidDpopProof(`claim ${cause.claim} is invalid`, cause);
      }
      if (cause instanceof joseErrors.JOSEError) throw authErrors.invalidDpopProof(cause.message, cause);
      // WebCrypto and key import errors on a hostile jwk (a point off the curve…).
      throw authErrors.invalidDpopProof('the jwk could not be used to verify the proof', cause);
    }
  }
}

interface NonceConfig {
  readonly secret: Uint8Array;
  readonly windowSeconds: number;
}

function windowIndex(nonce: NonceConfig, nowMs: number): number {
  return Math.floor(nowMs / 1000 / nonce.windowSeconds);
}

function nonceFor(nonce: NonceConfig, window: number): string {
  return base64url.encode(createHmac('sha256', nonce.secret).update(`dpop-nonce:${window}`).digest());
}

/** Whether `presented` was issued in the current or the previous window (RFC 9449 §8). */
function isCurrentNonce(nonce: NonceConfig, presented: unknown, nowMs: number): boolean {
  if (typeof presented !== 'string' || presented.length === 0) return false;
  const bytes = Buffer.from(presented);
  const window = windowIndex(nonce, nowMs);
  // Constant-time, so the MAC cannot be guessed byte by byte.
  return [window, window - 1].some((w) => {
    const expected = Buffer.from(nonceFor(nonce, w));
    return expected.length === bytes.length && timingSafeEqual(expected, bytes);
  });
}

/** base64url(SHA-256(access token)): the `ath` claim (RFC 9449 §4.2). */
function accessTokenHash(accessToken: string): string {
  return base64url.encode(createHash('sha256').update(accessToken).digest());
}

/** `none` and the HMAC algorithms can never prove possession of a public key. */
function isForbiddenAlgorithm(alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^HS\d+$/i.test(alg);
}

/**
 * typ is a media type: compared case-insensitively, and `application/` may be
 * omitted (RFC 7515 §4.1.9) — the same normalisation jose applies.
 */
function isDpopTyp(typ: unknown): boolean {
  if (typeof typ !== 'string') return false;
  const lower = typ.toLowerCase();
  return lower === 'dpop+jwt' || lower === 'application/dpop+jwt';
}

/**
 * The parts of a URL that htu must match (§4.3 item 9): scheme, host, port
 * and path; no query or fragment. `URL` lowercases scheme and host, drops
 * default ports and resolves dot segments (RFC 3986 §6.2.2–6.2.3); the path
 * additionally gets percent-encoding normalisation. Undefined when `url` is
 * not an absolute http(s) URL.
 */
function normalizeHtu(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return undefined;
  const path = parsed.pathname.replace(/%[0-9A-Fa-f]{2}/g, (escape) => {
    const char = String.fromCharCode(Number.parseInt(escape.slice(1), 16));
    return /^[A-Za-z0-9\-._~]$/.test(char) ? char : escape.toUpperCase();
  });
  return `${parsed.protocol}//${parsed.host}${path}`;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`DpopVerifier ${name} must be a positive number`);
  return value;
}
