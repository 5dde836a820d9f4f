/**
 * Auth overhead benchmark: what authenticating a request adds to its latency,
 * for an API key, a JWT (Bearer) and a DPoP-bound JWT with a fresh proof per
 * request, against an unauthenticated baseline, over real HTTP on loopback.
 *
 *   npm run bench:auth -- [--n 2000] [--warmup 200] [--backends pglite,postgres]
 *
 * See docs/benchmarks.md for what is measured and how to read the results.
 */
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  EmbeddedJWK,
  SignJWT,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  type CryptoKey,
  type JWK,
} from 'jose';
import {
  BACKENDS,
  DEFAULT_DATABASE_URL,
  configSummary,
  startBackend,
  type Backend,
  type BackendName,
} from './lib/backend.ts';
import {
  DEFAULT_RESULTS_DIR,
  errText,
  forEachBackend,
  log,
  positiveInt,
  runBench,
  writeResult,
  type BenchFacts,
} from './lib/cli.ts';
import { markdownTable, round, roundSummary, summarize, table, type LatencySummary } from './lib/stats.ts';

/** `none` is the baseline: a public route, no credentials. */
const METHODS = ['none', 'api_key', 'jwt', 'jwt_dpop'] as const;
type Method = (typeof METHODS)[number];
type AuthMethod = Exclude<Method, 'none'>;
const AUTH_METHODS: readonly AuthMethod[] = ['api_key', 'jwt', 'jwt_dpop'];

const TOKEN_ALGS = ['ES256', 'EdDSA', 'RS256'] as const;
const PROOF_ALGS = ['ES256', 'EdDSA'] as const;
type TokenAlg = (typeof TOKEN_ALGS)[number];
type ProofAlg = (typeof PROOF_ALGS)[number];

const ISSUER = 'https://idp.engram.bench';
const AUDIENCE = 'https://engram.bench';

const HELP = `Usage: npm run bench:auth -- [options]

  --n <count>             measured requests per auth method (default 2000)
  --warmup <count>        unmeasured requests per auth method first (default 200)
  --backends <list>       pglite,postgres (default pglite)
  --token-alg <alg>       access token signature: ES256, EdDSA or RS256 (default ES256)
  --proof-alg <alg>       DPoP proof signature: ES256 or EdDSA (default ES256)
  --markdown              also print the tables as Markdown
  --out <dir>             where to write the JSON (default bench/results)

Sequential requests (concurrency 1) over one keep-alive connection, the
methods interleaved round by round: GET /health/live (public, the baseline),
then GET /v1/me with an API key, a JWT (Bearer) and a DPoP-bound JWT with a
new proof per request. The proof is minted before the request's clock starts;
minting is reported on its own. Then the same credentials through the
server's Authenticator.authenticate() in-process, without HTTP, and the jose
calls that verification makes, each timed alone.

Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}) for the postgres
backend, VALKEY_URL (optional, postgres only, holds the DPoP replay cache).
Both must point at 127.0.0.1.
`;

const oneOf = <T extends string>(name: string, v: string | undefined, allowed: readonly T[], def: T): T => {
  if (v === undefined) return def;
  if (!(allowed as readonly string[]).includes(v)) throw new Error(`--${name} must be one of ${allowed.join(', ')}`);
  return v as T;
};

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: 'string' },
      warmup: { type: 'string' },
      backends: { type: 'string' },
      'token-alg': { type: 'string' },
      'proof-alg': { type: 'string' },
      markdown: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  const backends = (values.backends ?? 'pglite')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`unknown backend ${b}`);
  return {
    help: values.help,
    n: positiveInt('n', values.n, 2000),
    warmup: values.warmup === '0' ? 0 : positiveInt('warmup', values.warmup, 200),
    backends: backends as BackendName[],
    tokenAlg: oneOf<TokenAlg>('token-alg', values['token-alg'], TOKEN_ALGS, 'ES256'),
    proofAlg: oneOf<ProofAlg>('proof-alg', values['proof-alg'], PROOF_ALGS, 'ES256'),
    markdown: values.markdown,
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}
type Options = ReturnType<typeof parseOptions>;

const fmt = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

/**
 * A stand-in identity provider and one DPoP client: real jose keys and
 * signatures. The server trusts the IdP's public key through an inline
 * AUTH_JWKS, so no JWKS is ever fetched.
 */
interface Idp {
  readonly env: Record<string, string>;
  /** RFC 7638 thumbprint of the DPoP client's public key. */
  readonly jkt: string;
  /** The public keys the server trusts, and the DPoP client's public key (for the primitives). */
  readonly publicJwks: { keys: JWK[] };
  readonly clientJwk: JWK;
  mintToken(orgRef: string, jkt?: string): Promise<string>;
  mintProof(htm: string, htu: string, accessToken: string): Promise<string>;
}

async function identityProvider(tokenAlg: TokenAlg, proofAlg: ProofAlg): Promise<Idp> {
  const kid = 'bench-1';
  const signing = await generateKeyPair(tokenAlg, { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(signing.publicKey)), kid, alg: tokenAlg, use: 'sig' };
  const client = await generateKeyPair(proofAlg, { extractable: true });
  const clientJwk = await exportJWK(client.publicKey);
  const clientKey: CryptoKey = client.privateKey;
  return {
    // The server listens on a port chosen at start, so proofs name what the client addressed.
    env: {
      AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }),
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      DPOP_HTU_FROM_HOST: 'true',
    },
    jkt: await calculateJwkThumbprint(clientJwk, 'sha256'),
    publicJwks: { keys: [publicJwk] },
    clientJwk,
    mintToken: (orgRef, jkt) =>
      new SignJWT({
        org_id: orgRef,
        scope: 'memories:read',
        ...(jkt === undefined ? {} : { cnf: { jkt } }),
      })
        .setProtectedHeader({ alg: tokenAlg, kid, typ: 'at+jwt' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject('bench-user')
        .setIssuedAt()
        .setExpirationTime('2h')
        .sign(signing.privateKey),
    mintProof: (htm, htu, accessToken) =>
      new SignJWT({
        htm,
        htu,
        jti: randomUUID(),
        ath: createHash('sha256').update(accessToken).digest('base64url'),
      })
        .setProtectedHeader({ typ: 'dpop+jwt', alg: proofAlg, jwk: clientJwk })
        .setIssuedAt()
        .sign(clientKey),
  };
}

/** How each method presents itself: the URL and the headers of one request. */
interface Credentials {
  readonly apiKey: string;
  readonly jwt: string;
  readonly dpopToken: string;
}

interface Prepared {
  readonly url: string;
  readonly authorization: string | undefined;
  readonly dpop: string | undefined;
  /** Client time spent minting a DPoP proof for this request (0 when none). */
  readonly mintMs: number;
}

const REQUEST: Record<Method, string> = {
  none: 'GET /health/live',
  api_key: 'GET /v1/me',
  jwt: 'GET /v1/me',
  jwt_dpop: 'GET /v1/me',
};

async function prepare(method: Method, base: string, c: Credentials, idp: Idp): Promise<Prepared> {
  const me = `${base}/v1/me`;
  switch (method) {
    case 'none':
      return { url: `${base}/health/live`, authorization: undefined, dpop: undefined, mintMs: 0 };
    case 'api_key':
      return { url: me, authorization: `Bearer ${c.apiKey}`, dpop: undefined, mintMs: 0 };
    case 'jwt':
      return { url: me, authorization: `Bearer ${c.jwt}`, dpop: undefined, mintMs: 0 };
    case 'jwt_dpop': {
      const t0 = performance.now();
      const proof = await idp.mintProof('GET', me, c.dpopToken);
      return { url: me, authorization: `DPoP ${c.dpopToken}`, dpop: proof, mintMs: performance.now() - t0 };
    }
  }
}

interface Call {
  readonly status: number;
  /** Milliseconds from sending the request to having read the whole body. */
  readonly ms: number;
  readonly body: string;
}

async function send(p: Prepared): Promise<Call> {
  const headers: Record<string, string> = {};
  if (p.authorization !== undefined) headers.authorization = p.authorization;
  if (p.dpop !== undefined) headers.dpop = p.dpop;
  const t0 = performance.now();
  try {
    // Node's fetch keeps the connection alive: every request reuses one socket.
    const res = await fetch(p.url, { headers });
    const body = await res.text();
    return { status: res.status, ms: performance.now() - t0, body };
  } catch (e) {
    return { status: 0, ms: performance.now() - t0, body: errText(e) };
  }
}

/** Each method's first request must succeed as that method; anything else is a finding, not noise. */
async function sanityCheck(b: Backend, c: Credentials, idp: Idp): Promise<void> {
  for (const method of METHODS) {
    const r = await send(await prepare(method, b.url, c, idp));
    if (r.status !== 200) {
      throw new Error(`${method}: ${REQUEST[method]} answered HTTP ${r.status}: ${r.body.slice(0, 500)}`);
    }
    if (method === 'none') continue;
    const me = JSON.parse(r.body) as { authMethod?: unknown };
    if (me.authMethod !== method) {
      throw new Error(`${method}: /v1/me says authMethod ${JSON.stringify(me.authMethod)}: ${r.body.slice(0, 500)}`);
    }
  }
}

interface HttpRun {
  readonly method: Method;
  readonly request: string;
  readonly requests: number;
  readonly errors: number;
  readonly latencyMs: LatencySummary;
  /** p50 minus the baseline's p50: what authenticating adds to a typical request. */
  readonly addedP50Ms: number;
  readonly addedMeanMs: number;
  readonly firstError?: string;
}

interface InProcessRun {
  readonly method: AuthMethod;
  readonly calls: number;
  readonly errors: number;
  readonly latencyMs: LatencySummary;
  readonly firstError?: string;
}

interface MintResult {
  readonly alg: ProofAlg;
  readonly proofs: number;
  readonly latencyMs: LatencySummary;
  /** Sequential proofs per second of minting time (one client, one key). */
  readonly proofsPerSec: number;
}

interface BackendResult {
  readonly backend: BackendName;
  readonly info: Record<string, unknown>;
  readonly config: Record<string, unknown>;
  readonly http: HttpRun[];
  readonly inProcess: InProcessRun[];
  readonly mint?: MintResult;
  readonly error?: string;
}

/** `rounds` rounds of one request per method, the order rotated each round so none always goes first. */
async function httpRuns(b: Backend, opts: Options, c: Credentials, idp: Idp) {
  const samples = new Map<Method, number[]>(METHODS.map((m) => [m, []]));
  const errors = new Map<Method, number>(METHODS.map((m) => [m, 0]));
  const firstErrors = new Map<Method, string>();
  const mints: number[] = [];
  const run = async (rounds: number, record: boolean) => {
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < METHODS.length; k++) {
        const method = METHODS[(i + k) % METHODS.length] ?? 'none';
        const p = await prepare(method, b.url, c, idp);
        const r = await send(p);
        if (!record) continue;
        if (method === 'jwt_dpop') mints.push(p.mintMs);
        if (r.status === 200) samples.get(method)?.push(r.ms);
        else {
          errors.set(method, (errors.get(method) ?? 0) + 1);
          if (!firstErrors.has(method)) firstErrors.set(method, `HTTP ${r.status}: ${r.body.slice(0, 300)}`);
        }
      }
    }
  };
  if (opts.warmup > 0) await run(opts.warmup, false);
  await run(opts.n, true);

  const base = summarize(samples.get('none') ?? []);
  const runs: HttpRun[] = METHODS.map((method) => {
    const s = summarize(samples.get(method) ?? []);
    const firstError = firstErrors.get(method);
    return {
      method,
      request: REQUEST[method],
      requests: opts.n,
      errors: errors.get(method) ?? 0,
      latencyMs: roundSummary(s, 4),
      addedP50Ms: round(s.p50 - base.p50, 4),
      addedMeanMs: round(s.mean - base.mean, 4),
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
  const m = summarize(mints);
  const mint: MintResult = {
    alg: opts.proofAlg,
    proofs: mints.length,
    latencyMs: roundSummary(m, 4),
    proofsPerSec: round(mints.length / (mints.reduce((a, x) => a + x, 0) / 1000), 0),
  };
  return { runs, mint };
}

/**
 * The same credentials through `Authenticator.authenticate()` directly: the
 * server's auth work without HTTP, routing or serialisation around it.
 */
async function inProcessRuns(b: Backend, opts: Options, c: Credentials, idp: Idp): Promise<InProcessRun[]> {
  const authenticator = b.server.engram.authenticator;
  const samples = new Map<AuthMethod, number[]>(AUTH_METHODS.map((m) => [m, []]));
  const errors = new Map<AuthMethod, number>(AUTH_METHODS.map((m) => [m, 0]));
  const firstErrors = new Map<AuthMethod, string>();
  const run = async (rounds: number, record: boolean) => {
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < AUTH_METHODS.length; k++) {
        const method = AUTH_METHODS[(i + k) % AUTH_METHODS.length] ?? 'api_key';
        const p = await prepare(method, b.url, c, idp);
        const t0 = performance.now();
        try {
          await authenticator.authenticate({
            authorization: p.authorization,
            dpop: p.dpop,
            method: 'GET',
            url: p.url,
            requestId: 'bench',
          });
          if (record) samples.get(method)?.push(performance.now() - t0);
        } catch (e) {
          if (!record) continue;
          errors.set(method, (errors.get(method) ?? 0) + 1);
          if (!firstErrors.has(method)) firstErrors.set(method, errText(e));
        }
      }
    }
  };
  if (opts.warmup > 0) await run(opts.warmup, false);
  await run(opts.n, true);
  return AUTH_METHODS.map((method) => {
    const firstError = firstErrors.get(method);
    return {
      method,
      calls: opts.n,
      errors: errors.get(method) ?? 0,
      latencyMs: roundSummary(summarize(samples.get(method) ?? []), 4),
      ...(firstError === undefined ? {} : { firstError }),
    };
  });
}

interface PrimitiveRun {
  readonly primitive: string;
  readonly alg: string;
  /** Which server step runs it per request. */
  readonly usedBy: string;
  readonly latencyMs: LatencySummary;
}

/**
 * The jose calls the server makes per JWT / DPoP request, each timed alone
 * with the same keys: where the in-process time goes. No server involved.
 */
async function primitiveRuns(opts: Options, idp: Idp): Promise<PrimitiveRun[]> {
  const token = await idp.mintToken('bench-org');
  const proof = await idp.mintProof('GET', 'http://127.0.0.1/v1/me', token);
  // The server's JwtVerifier also uses createLocalJWKSet for an inline AUTH_JWKS.
  const jwks = createLocalJWKSet(idp.publicJwks);
  const steps: { primitive: string; alg: string; usedBy: string; run: () => Promise<unknown> }[] = [
    {
      primitive: 'verify access token (jwtVerify, local JWKS)',
      alg: opts.tokenAlg,
      usedBy: 'JwtVerifier',
      run: () => jwtVerify(token, jwks, { issuer: ISSUER, audience: AUDIENCE }),
    },
    {
      primitive: 'import proof jwk (importJWK)',
      alg: opts.proofAlg,
      usedBy: 'DpopVerifier',
      run: () => importJWK(idp.clientJwk, opts.proofAlg),
    },
    {
      primitive: 'verify proof (jwtVerify, EmbeddedJWK)',
      alg: opts.proofAlg,
      usedBy: 'DpopVerifier',
      run: () => jwtVerify(proof, EmbeddedJWK),
    },
    {
      primitive: 'jwk thumbprint (calculateJwkThumbprint)',
      alg: 'SHA-256',
      usedBy: 'DpopVerifier',
      run: () => calculateJwkThumbprint(idp.clientJwk, 'sha256'),
    },
  ];
  const out: PrimitiveRun[] = [];
  for (const step of steps) {
    for (let i = 0; i < opts.warmup; i++) await step.run();
    const samples: number[] = [];
    for (let i = 0; i < opts.n; i++) {
      const t0 = performance.now();
      await step.run();
      samples.push(performance.now() - t0);
    }
    out.push({
      primitive: step.primitive,
      alg: step.alg,
      usedBy: step.usedBy,
      latencyMs: roundSummary(summarize(samples), 4),
    });
  }
  return out;
}

let active: Backend | undefined;

async function benchBackend(name: BackendName, opts: Options, idp: Idp): Promise<BackendResult> {
  log(`${name}: starting server`);
  const b = await startBackend(name, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: name === 'postgres' ? process.env.VALKEY_URL : undefined,
    env: idp.env,
  });
  active = b;
  try {
    log(`${name}: listening on ${b.url}${b.database === undefined ? '' : `, database ${b.database}`}`);
    const org = await b.server.engram.system.findOrgBySlug('default');
    if (org === undefined) throw new Error('the server did not create the org "default"');
    // Same scope for every method, so no path gets more or less policy work.
    const key = await b.server.engram.apiKeys.create(org.id, { name: 'bench auth', scopes: ['memories:read'] });
    const c: Credentials = {
      apiKey: key.secret,
      jwt: await idp.mintToken(org.id),
      dpopToken: await idp.mintToken(org.id, idp.jkt),
    };
    await sanityCheck(b, c, idp);

    log(`${name}: ${opts.warmup} warm-up + ${opts.n} measured rounds over HTTP`);
    const { runs, mint } = await httpRuns(b, opts, c, idp);
    for (const r of runs) {
      log(
        `${name} ${r.method}: p50 ${fmt(r.latencyMs.p50)} p95 ${fmt(r.latencyMs.p95)} p99 ${fmt(r.latencyMs.p99)} ms, ` +
          `+p50 ${fmt(r.addedP50Ms)} ms, ${r.errors} errors`,
      );
      if (r.firstError !== undefined) log(`${name} ${r.method} first error: ${r.firstError}`);
    }
    log(`${name}: ${opts.warmup} warm-up + ${opts.n} measured rounds of authenticate() in-process`);
    const inProcess = await inProcessRuns(b, opts, c, idp);
    for (const r of inProcess) if (r.firstError !== undefined) log(`${name} ${r.method} first error: ${r.firstError}`);
    return { backend: name, info: b.info, config: configSummary(b), http: runs, inProcess, mint };
  } finally {
    await b.close();
    active = undefined;
  }
}

async function main(opts: Options, facts: BenchFacts): Promise<number> {
  const m = facts.machine;
  log(
    `n=${opts.n}, warmup=${opts.warmup}, backends=${opts.backends.join(',')}, token ${opts.tokenAlg}, ` +
      `proof ${opts.proofAlg}; ${m.cpus} CPUs, ${m.totalMemGiB} GiB, node ${m.node}`,
  );
  const idp = await identityProvider(opts.tokenAlg, opts.proofAlg);

  const results = await forEachBackend(
    opts.backends,
    (name) => benchBackend(name, opts, idp),
    (name, error): BackendResult => ({ backend: name, info: {}, config: {}, http: [], inProcess: [], error }),
  );

  log(`jose primitives, ${opts.warmup} warm-up + ${opts.n} measured calls each`);
  const primitives = await primitiveRuns(opts, idp);

  const httpHeader = ['backend', 'auth', 'request', 'p50 ms', 'p95 ms', 'p99 ms', '+p50 ms', 'errors'];
  const httpRows = results.flatMap((r) =>
    r.http.map((x) => [
      r.backend,
      x.method,
      x.request,
      fmt(x.latencyMs.p50),
      fmt(x.latencyMs.p95),
      fmt(x.latencyMs.p99),
      x.method === 'none' ? '-' : fmt(x.addedP50Ms),
      String(x.errors),
    ]),
  );
  const inHeader = ['backend', 'auth', 'call', 'p50 ms', 'p95 ms', 'p99 ms', 'errors'];
  const inRows = results.flatMap((r) =>
    r.inProcess.map((x) => [
      r.backend,
      x.method,
      'authenticate()',
      fmt(x.latencyMs.p50),
      fmt(x.latencyMs.p95),
      fmt(x.latencyMs.p99),
      String(x.errors),
    ]),
  );
  const primHeader = ['primitive', 'alg', 'used by', 'p50 ms', 'p95 ms', 'p99 ms'];
  const primRows = primitives.map((x) => [
    x.primitive,
    x.alg,
    x.usedBy,
    fmt(x.latencyMs.p50),
    fmt(x.latencyMs.p95),
    fmt(x.latencyMs.p99),
  ]);
  const mintLines = results.flatMap((r) =>
    r.mint === undefined
      ? []
      : [
          `${r.backend}: client minted ${r.mint.proofs} ${r.mint.alg} DPoP proofs, p50 ${fmt(r.mint.latencyMs.p50)} ` +
            `p95 ${fmt(r.mint.latencyMs.p95)} ms each, ${fmt(r.mint.proofsPerSec, 0)} proofs/s (not in the latencies above)`,
        ],
  );
  process.stdout.write(
    `\nAuth overhead, ${opts.n} sequential requests per row after ${opts.warmup} warm-up, ` +
      `token ${opts.tokenAlg}, proof ${opts.proofAlg}\n\n${table(httpHeader, httpRows)}\n\n` +
      `Server-side auth alone, in-process:\n\n${table(inHeader, inRows)}\n\n` +
      `The jose calls inside it, each alone:\n\n${table(primHeader, primRows)}\n\n${mintLines.join('\n')}\n`,
  );
  if (opts.markdown) {
    process.stdout.write(
      `\n${markdownTable(httpHeader, httpRows)}\n\n${markdownTable(inHeader, inRows)}\n\n` +
        `${markdownTable(primHeader, primRows)}\n`,
    );
  }

  const { help: _help, markdown: _md, out: _out, ...recorded } = opts;
  writeResult(opts.out, 'auth', facts, { options: recorded, results, primitives });
  const failed = results.some(
    (r) => r.error !== undefined || r.http.some((x) => x.errors > 0) || r.inProcess.some((x) => x.errors > 0),
  );
  return failed ? 1 : 0;
}

// Ctrl-C still stops the server and drops the database.
runBench({
  help: HELP,
  parse: parseOptions,
  main,
  cleanup: async () => {
    await active?.close();
  },
});
