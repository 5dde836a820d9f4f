/**
 * A deterministic corpus of engineering-team notes and search queries.
 *
 * Memories are built from templates (decisions, incidents, preferences,
 * how-tos, bugs, meeting notes) filled from a vocabulary of a few hundred
 * words, padded with detail sentences to a target length of 10–80 words, and
 * spread over projects, users, agents and tags. Queries (2–6 words) are drawn
 * from the same vocabulary, so every mode has something to find. The same
 * seed always gives the same text on every machine.
 */

/** mulberry32: a small, fast, seedable PRNG with a 2^32 period. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

const SERVICES = [
  'auth-service',
  'billing-api',
  'search-indexer',
  'notification-worker',
  'api-gateway',
  'checkout',
  'inventory',
  'payments',
  'user-profile',
  'ingest-pipeline',
  'scheduler',
  'reporting',
  'web-frontend',
  'mobile-backend',
  'feature-store',
  'audit-log',
  'email-sender',
  'media-transcoder',
  'recommendations',
  'admin-console',
] as const;

const TECH = [
  'postgres',
  'redis',
  'valkey',
  'kafka',
  'kubernetes',
  'terraform',
  'grafana',
  'prometheus',
  'nginx',
  'docker',
  'helm',
  'sentry',
  'elasticsearch',
  'opensearch',
  's3',
  'cloudfront',
  'typescript',
  'node',
  'python',
  'golang',
  'rust',
  'graphql',
  'grpc',
  'vite',
  'vitest',
  'playwright',
  'pgbouncer',
  'rabbitmq',
  'dynamodb',
  'lambda',
  'airflow',
  'dbt',
  'snowflake',
  'opentelemetry',
  'jaeger',
  'vault',
  'consul',
  'argocd',
  'datadog',
  'pagerduty',
  'fastify',
  'kysely',
  'pgvector',
  'sqlite',
  'clickhouse',
  'envoy',
  'istio',
  'cloudflare',
  'github-actions',
  'renovate',
] as const;

const NOUNS = [
  'connection pool',
  'cache',
  'queue',
  'index',
  'migration',
  'schema',
  'endpoint',
  'timeout',
  'retry policy',
  'rate limit',
  'dashboard',
  'alert',
  'deploy',
  'rollback',
  'feature flag',
  'config',
  'secret',
  'certificate',
  'dns record',
  'load balancer',
  'read replica',
  'shard',
  'partition',
  'backup',
  'snapshot',
  'cron job',
  'webhook',
  'access token',
  'session',
  'cookie',
  'cors policy',
  'latency',
  'throughput',
  'memory leak',
  'cpu usage',
  'disk space',
  'log volume',
  'trace sampling',
  'metric',
  'integration test',
  'fixture',
  'pipeline',
  'build',
  'release',
  'branch',
  'code review',
  'lint rule',
  'dependency',
  'upgrade',
  'api version',
  'client library',
  'sdk',
  'contract',
  'payload',
  'batch job',
  'worker',
  'consumer group',
  'producer',
  'topic',
  'offset',
  'consumer lag',
  'heap',
  'thread pool',
  'lock',
  'deadlock',
  'transaction',
  'isolation level',
  'vacuum',
  'table bloat',
  'statement timeout',
  'query plan',
  'slow query',
  'runbook',
  'on-call rotation',
  'error budget',
  'slo',
  'canary',
  'blue-green deploy',
  'health check',
  'readiness probe',
  'container image',
  'node pool',
  'autoscaler',
  'quota',
  'invoice',
  'refund',
  'subscription',
  'password reset',
  'login flow',
  'signup form',
  'search ranking',
  'embedding',
  'vector index',
  'onboarding doc',
  'style guide',
  'changelog',
  'api key',
] as const;

const PEOPLE = [
  'alice',
  'bob',
  'carol',
  'dmitri',
  'elena',
  'farid',
  'grace',
  'hiro',
  'ines',
  'jamal',
  'kofi',
  'lena',
  'mateo',
  'nadia',
  'oscar',
  'priya',
  'quinn',
  'rosa',
  'sven',
  'tomas',
  'uma',
  'victor',
  'wei',
  'yara',
  'zoe',
] as const;

const PROJECTS = ['atlas', 'borealis', 'cinder', 'dynamo', 'ember', 'fjord', 'granite', 'harbor'] as const;
const AGENTS = ['claude-code', 'cursor', 'copilot', 'aider'] as const;
const ENVS = [
  'production',
  'staging',
  'the dev cluster',
  'the eu region',
  'the us-east region',
  'local docker',
] as const;
const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'] as const;

const VERBS = [
  'migrate',
  'rotate',
  'restart',
  'scale',
  'throttle',
  'cache',
  'retry',
  'shard',
  'pin',
  'upgrade',
  'deprecate',
  'rewrite',
  'split',
  'merge',
  'monitor',
  'benchmark',
  'profile',
  'document',
  'automate',
  'replace',
] as const;

const SYMPTOMS = [
  'returned 502 errors',
  'timed out under load',
  'ran out of memory',
  'dropped messages',
  'served stale data',
  'leaked file descriptors',
  'pegged the cpu',
  'stopped consuming',
  'double charged customers',
  'lost sessions',
  'logged secrets',
  'filled the disk',
  'deadlocked on startup',
  'flapped its health check',
] as const;

const CAUSES = [
  'an exhausted connection pool',
  'a missing index',
  'an expired certificate',
  'a bad feature flag',
  'a retry storm',
  'a schema migration that locked the table',
  'a noisy neighbour on the node',
  'an unbounded query',
  'a race in the cache invalidation',
  'clock skew between hosts',
  'a dependency upgrade with a breaking change',
  'a misconfigured rate limit',
  'a dns change that had not propagated',
  'a full disk on the primary',
] as const;

const EVENTS = [
  'the friday deploy',
  'a traffic spike from the newsletter',
  'the failover drill',
  'the nightly batch job',
  'a config change',
  'the kubernetes upgrade',
  'the marketing launch',
  'a region outage',
] as const;

const FIXES = [
  'rolled back the release',
  'added the missing index',
  'raised the pool size',
  'rotated the certificate',
  'disabled the flag',
  'added jitter to the retries',
  'split the migration into batches',
  'moved the job off peak hours',
  'added a circuit breaker',
  'patched the client library',
] as const;

const REASONS = [
  'it is cheaper to run',
  'the team already knows it',
  'it halves p95 latency',
  'the old one is end of life',
  'it removes a single point of failure',
  'it simplifies on-call',
  'the vendor raised prices',
  'it passed the load test',
  'it keeps tenant data isolated',
  'it is easier to test locally',
] as const;

const QUALIFIERS = [
  'slow',
  'flaky',
  'intermittent',
  'critical',
  'minor',
  'stale',
  'noisy',
  'expensive',
  'brittle',
  'legacy',
  'new',
  'shared',
  'internal',
  'public',
] as const;

const PRACTICES = [
  'write a runbook entry',
  'add a regression test',
  'tag the release',
  'post in the incident channel',
  'pair on the change',
  'update the changelog',
  'ask for two approvals',
  'run the load test',
  'check the error budget',
  'squash the commits',
] as const;

export type MemoryKind = 'decision' | 'incident' | 'preference' | 'howto' | 'bug' | 'meeting';
const KINDS: readonly MemoryKind[] = ['decision', 'incident', 'preference', 'howto', 'bug', 'meeting'];

function lead(r: Rand, kind: MemoryKind, svc: string, tech: string, person: string): string {
  const noun = pick(r, NOUNS);
  switch (kind) {
    case 'decision':
      return pick(r, [
        `We decided to ${pick(r, VERBS)} the ${noun} in ${svc} using ${tech} instead of ${pick(r, TECH)}, because ${pick(r, REASONS)}.`,
        `Decision: ${svc} moves its ${noun} to ${tech}; ${person} signed off because ${pick(r, REASONS)}.`,
        `ADR-${int(r, 10, 400)}: keep ${tech} for the ${noun} of ${svc} for now, revisit in Q${int(r, 1, 4)}.`,
      ]);
    case 'incident':
      return pick(r, [
        `Incident INC-${int(r, 1000, 9999)}: ${svc} ${pick(r, SYMPTOMS)} after ${pick(r, EVENTS)}; root cause was ${pick(r, CAUSES)}. ${person} ${pick(r, FIXES)}.`,
        `Postmortem for ${svc}: ${pick(r, SYMPTOMS)} in ${pick(r, ENVS)} for ${int(r, 3, 90)} minutes, caused by ${pick(r, CAUSES)}.`,
        `Outage on ${pick(r, DAYS)}: the ${noun} of ${svc} ${pick(r, SYMPTOMS)}. We ${pick(r, FIXES)}.`,
      ]);
    case 'preference':
      return pick(r, [
        `${person} prefers ${tech} over ${pick(r, TECH)} for the ${noun} work.`,
        `Team convention: always ${pick(r, PRACTICES)} when touching the ${noun} of ${svc}.`,
        `${person} likes small pull requests and wants a ${noun} check before merging into ${svc}.`,
        `Preference: use ${tech} for new ${noun} code, never ${pick(r, TECH)}.`,
      ]);
    case 'howto':
      return pick(r, [
        `To ${pick(r, VERBS)} the ${noun} for ${svc}, open ${tech}, change the ${pick(r, NOUNS)} setting, then ${pick(r, PRACTICES)}.`,
        `How to debug a ${pick(r, QUALIFIERS)} ${noun} in ${svc}: check the ${tech} dashboard first, then the ${pick(r, NOUNS)}.`,
        `Runbook: if the ${noun} in ${svc} is ${pick(r, QUALIFIERS)}, restart the worker and ${pick(r, PRACTICES)}.`,
      ]);
    case 'bug':
      return pick(r, [
        `Bug in ${svc}: the ${noun} ${pick(r, SYMPTOMS)} when ${tech} is ${pick(r, QUALIFIERS)}. Workaround: ${pick(r, FIXES)}.`,
        `Known issue: ${tech} client in ${svc} has a ${pick(r, QUALIFIERS)} ${noun}; ${person} is tracking it in JIRA-${int(r, 100, 9999)}.`,
        `The ${pick(r, QUALIFIERS)} ${noun} test in ${svc} fails about once in ${int(r, 5, 50)} runs on ${tech}.`,
      ]);
    case 'meeting':
      return pick(r, [
        `Sprint ${int(r, 1, 60)} retro: the ${noun} work on ${svc} slipped; ${person} will ${pick(r, VERBS)} it next sprint.`,
        `Standup ${pick(r, DAYS)}: ${person} is blocked on the ${noun} for ${svc} until ${tech} access is granted.`,
        `Planning: ${svc} gets a ${pick(r, QUALIFIERS)} ${noun} cleanup and a ${tech} upgrade this quarter.`,
      ]);
  }
}

function detail(r: Rand, svc: string, tech: string): string {
  const noun = pick(r, NOUNS);
  return pick(r, [
    `${pick(r, PEOPLE)} will follow up on the ${noun} by ${pick(r, DAYS)}.`,
    `See the runbook for ${svc} and the ${noun} section.`,
    `Latency went from ${int(r, 20, 900)} ms to ${int(r, 5, 200)} ms after the change.`,
    `This only affects ${pick(r, ENVS)}.`,
    `The ${tech} version is pinned to ${int(r, 1, 17)}.${int(r, 0, 20)}.`,
    `Related: the ${pick(r, QUALIFIERS)} ${noun} in ${pick(r, SERVICES)}.`,
    `We should ${pick(r, VERBS)} the ${noun} before the next release.`,
    `Ask ${pick(r, PEOPLE)} before changing the ${noun}, it is ${pick(r, QUALIFIERS)}.`,
    `Error rate dropped to ${int(r, 0, 9)}.${int(r, 0, 99)} percent.`,
    `Cost impact is about ${int(r, 1, 90)} hundred dollars a month.`,
    `Remember to ${pick(r, PRACTICES)}.`,
  ]);
}

const wordsOf = (s: string): string[] => s.split(/\s+/).filter((w) => w.length > 0);

export interface BenchMemory {
  readonly content: string;
  readonly scope: { project: string; user?: string; agent?: string };
  readonly tags: string[];
  readonly metadata: Record<string, unknown>;
}

/**
 * The i-th memory of the corpus for `seed`: independent of every other index.
 * With `users`, every memory belongs to one of that many users (`user-0` …,
 * see {@link userAt}) instead of 70 % of them to one of the 25 people; the
 * content, project, agent and tags stay the same.
 */
export function memoryAt(seed: number, i: number, users?: number): BenchMemory {
  const r = rng((seed * 1_000_003 + i * 7919) >>> 0);
  const kind = pick(r, KINDS);
  const svc = pick(r, SERVICES);
  const tech = pick(r, TECH);
  const person = pick(r, PEOPLE);
  // Sum of two uniforms: mostly 25–55 words, sometimes 10 or 80.
  const target = Math.max(10, Math.min(80, Math.round(10 + (r() + r()) * 35)));
  const words = wordsOf(lead(r, kind, svc, tech, person));
  while (words.length < target) words.push(...wordsOf(detail(r, svc, tech)));
  // End on a sentence boundary when one is close to the target, else cut there.
  let end = target;
  for (let k = target; k >= Math.max(10, Math.floor(target * 0.75)); k--) {
    if (/[.!?]$/.test(words[k - 1] ?? '')) {
      end = k;
      break;
    }
  }
  let text = words.slice(0, end).join(' ');
  if (!/[.!?]$/.test(text)) text = `${text.replace(/[,;:]$/, '')}.`;
  const content = text.charAt(0).toUpperCase() + text.slice(1);

  const scope: BenchMemory['scope'] = { project: pick(r, PROJECTS) };
  // Drawn even when `users` replaces it, so the agent and tags below stay the same.
  const personal = r() < 0.7;
  if (users !== undefined) scope.user = userAt(seed, i, users);
  else if (personal) scope.user = person;
  if (r() < 0.3) scope.agent = pick(r, AGENTS);
  const tags: string[] = [kind, svc];
  if (r() < 0.5) tags.push(tech);
  return { content, scope, tags, metadata: { kind, source: 'bench', n: i } };
}

/**
 * The user of memory i when the corpus is spread over `users` users: uniform,
 * from a stream of its own so that it does not correlate with the content.
 */
export function userAt(seed: number, i: number, users: number): string {
  const r = rng((seed * 3_000_017 + i * 15_485_863 + 29) >>> 0);
  return `user-${Math.floor(r() * users)}`;
}

const QUERY_WORDS: readonly string[] = [
  ...new Set(
    ([...SERVICES, ...TECH, ...NOUNS, ...VERBS, ...QUALIFIERS, ...PEOPLE, ...KINDS] as readonly string[]).flatMap((s) =>
      wordsOf(s),
    ),
  ),
];

/** The i-th query for `seed`: 2–6 words, keywords or a short question. */
export function queryAt(seed: number, i: number): string {
  const r = rng((seed * 2_000_003 + i * 104_729 + 17) >>> 0);
  const style = r();
  let words: string[];
  if (style < 0.25) {
    // A question an agent would ask: "how do we rotate the vault secret".
    words = [
      ...pick(r, [
        ['how', 'to'],
        ['why', 'did'],
        ['what', 'is'],
        ['who', 'owns'],
      ]),
      ...wordsOf(pick(r, [pick(r, VERBS), pick(r, TECH)])),
      ...wordsOf(pick(r, NOUNS)),
    ];
  } else if (style < 0.6) {
    // Service + topic: "billing-api connection pool timeout".
    words = [pick(r, SERVICES), ...wordsOf(pick(r, NOUNS)), ...(r() < 0.5 ? [pick(r, TECH)] : [])];
  } else {
    // Bag of vocabulary words.
    const n = int(r, 2, 6);
    words = Array.from({ length: n }, () => pick(r, QUERY_WORDS));
  }
  return words.slice(0, 6).join(' ');
}

/** Size of the distinct query vocabulary (reported in the results). */
export const vocabularySize = (): number => QUERY_WORDS.length;

/**
 * The words of `text` as the server's queryTerms splits them (lower case,
 * letters and digits), without the PostgreSQL english stopwords that
 * {@link queryAt} can produce (checked with to_tsvector): a memory that
 * contains one of them is a lexical match for the query.
 */
export function matchTerms(text: string): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  return [...new Set(words)].filter((w) => !QUERY_STOPWORDS.has(w));
}

const QUERY_STOPWORDS: ReadonlySet<string> = new Set(['how', 'to', 'why', 'did', 'what', 'who', 'is', 'on']);

/**
 * Which users have memories that lexically match a query, over corpus
 * memories 0..n-1: for every query word, the memories that contain it. Picks
 * the user of a scoped search, so that the user's memories answer it.
 */
export class CorpusUsers {
  private readonly postings = new Map<string, number[]>();
  private readonly userOf: string[] = [];

  constructor(
    private readonly seed: number,
    n: number,
    users: number | undefined,
  ) {
    const vocabulary = new Set(QUERY_WORDS.flatMap(matchTerms));
    for (let i = 0; i < n; i++) {
      const m = memoryAt(seed, i, users);
      if (m.scope.user === undefined) continue;
      const k = this.userOf.push(m.scope.user) - 1;
      for (const w of matchTerms(m.content)) {
        if (!vocabulary.has(w)) continue;
        const list = this.postings.get(w);
        if (list === undefined) this.postings.set(w, [k]);
        else list.push(k);
      }
    }
  }

  /** Memories with a user. */
  get size(): number {
    return this.userOf.length;
  }

  /**
   * The user of a random memory that contains one of the query's words (a
   * random such word, then a random memory with it), deterministic in `i`;
   * of any memory when none matches; undefined when no memory has a user.
   */
  userFor(query: string, i: number): string | undefined {
    const r = rng((this.seed * 4_000_037 + i * 1_299_709 + 31) >>> 0);
    const lists = matchTerms(query).flatMap((w) => {
      const l = this.postings.get(w);
      return l === undefined ? [] : [l];
    });
    if (lists.length === 0) return this.userOf[Math.floor(r() * this.userOf.length)];
    return this.userOf[pick(r, pick(r, lists))];
  }
}
