/**
 * Code index speed benchmark: a full index of a repository of ≥ 2,000 source
 * files, then an incremental re-index after a one-file change, through the
 * REST API of an in-process server (the job runs in its worker, as in
 * production).
 *
 *   npm run bench:code-index -- [--source node_modules/@opentelemetry] [--backends pglite,postgres] [--runs 3] [--precise] [--out bench/results]
 *
 * The source directory is copied into a temporary git repository (one commit)
 * and registered as a path repository. A run is timed from the request to
 * the moment the repo reads `indexed` (polled every 50 ms: each poll is an
 * authenticated request the server serves meanwhile); the per-phase split comes from the run's own `progress.phaseMs`. Peak RSS is this
 * process's (the server and, for PGlite, the database run in it; PostgreSQL's
 * own processes are not counted, but their CPU time is, when they run on
 * this machine). The code-search chunking job that follows each run is timed
 * separately. The full index runs `--runs` times (the repository removed and
 * registered again in between) and the median run is reported: on a shared
 * 2-core machine one run can be 20 % off; the one-file change is made and
 * re-indexed as many times, and its median reported too. The first run is also shown on its
 * own: it pays for the parser threads' start and for code not yet optimised
 * by V8, as the first index after a server starts does.
 *
 * The issue's targets: ≥ 500 files/s for a full index (the tree-sitter pass,
 * i.e. without the compiler's precise pass) on 2 cores; ≤ 1 s for the
 * re-index after a one-file change.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { api, startBackend, DEFAULT_DATABASE_URL, BACKENDS, type Backend, type BackendName } from './lib/backend.ts';
import { DEFAULT_RESULTS_DIR, fmt, forEachBackend, list, log, runBench, writeResult } from './lib/cli.ts';
import { round, table } from './lib/stats.ts';

const HELP = `Usage: npm run bench:code-index -- [options]

  --source <dir>       directory copied into the benchmark repository (default node_modules/@opentelemetry)
  --backends <list>    pglite, postgres (default both)
  --runs <n>           full index runs per backend, the repository removed between them, and as many
                       one-file re-indexes; the medians are reported (default 3)
  --precise            also run the TypeScript compiler's precise pass (off by default: the target is the tree-sitter pass)
  --out <dir>          where to write the JSON (default bench/results)
  --help

CODE_PARSE_THREADS in the environment is passed on to the server (default: one per core but one).
`;

interface Options {
  readonly help: boolean;
  readonly source: string;
  readonly backends: BackendName[];
  readonly precise: boolean;
  readonly runs: number;
  readonly out: string;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', default: false },
      source: { type: 'string' },
      backends: { type: 'string' },
      precise: { type: 'boolean', default: false },
      runs: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const runs = Number(values.runs ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  const backends = list(values.backends, BACKENDS.join(','));
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`unknown backend ${b}`);
  return {
    help: values.help,
    source: path.resolve(values.source ?? 'node_modules/@opentelemetry'),
    backends: backends as BackendName[],
    precise: values.precise,
    runs,
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}

interface RepoJson {
  id: string;
  status: string;
  lastError: string | null;
  progress: {
    phase: string;
    filesTotal: number;
    filesDone: number;
    parsed: number;
    unchanged: number;
    phaseMs: Record<string, number>;
  };
  counts?: { files: number; symbols: number; edges: number; unresolvedEdges: number };
}

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
  });

const POLL_MS = 50;

/** Polls until the repo has finished the run queued as `jobId`; returns the wall time since `t0`. */
async function waitIndexed(b: Backend, repoId: string, t0: number): Promise<{ ms: number; repo: RepoJson }> {
  let polls = 0;
  for (;;) {
    const r = await api<RepoJson>(b, 'GET', `/v1/repos/${repoId}`);
    if (r.status === 'failed') throw new Error(`indexing failed: ${r.lastError ?? ''}`);
    if (r.status === 'indexed') return { ms: performance.now() - t0, repo: r };
    if (++polls % 100 === 0) log(`… ${r.progress.phase} ${r.progress.filesDone}/${r.progress.filesTotal}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Waits until no job is queued or running (the chunking job that follows an index run). */
async function waitJobsIdle(b: Backend, t0: number): Promise<number> {
  for (;;) {
    const [queued, running] = await Promise.all(
      ['queued', 'running'].map((s) => api<{ items: unknown[] }>(b, 'GET', `/v1/jobs?state=${s}&limit=1`)),
    );
    if (queued?.items.length === 0 && running?.items.length === 0) return performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface RunResult {
  backend: BackendName;
  files: number;
  symbols: number;
  edges: number;
  full: {
    /** The median run's. */
    ms: number;
    filesPerSec: number;
    runsMs: number[];
    phaseMs: Record<string, number>;
    chunksMs: number;
    /** CPU seconds of the median run: this process (all threads), and PostgreSQL's processes when local. */
    cpu: { engramS: number; postgresS: number | null };
  };
  incremental: { ms: number; runsMs: number[]; parsed: number; unchanged: number; phaseMs: Record<string, number> };
  unchanged: { ms: number; parsed: number };
  peakRssMb: number;
  error?: string;
}

const rssMb = () => process.resourceUsage().maxRSS / 1024;

/**
 * CPU time (ms) of this machine's PostgreSQL processes, from /proc; null when
 * they cannot be seen (another host, another OS). Clock ticks are 1/100 s on Linux.
 */
function postgresCpuMs(): number | null {
  if (!existsSync('/proc/self/stat')) return null;
  let ticks = 0;
  let seen = false;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile
    }
    const close = stat.lastIndexOf(')');
    if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('postgres')) continue;
    const fields = stat.slice(close + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
    seen = true;
  }
  return seen ? ticks * 10 : null;
}

let current: Backend | undefined;
let root: string | undefined;

interface FullRun {
  id: string;
  ms: number;
  repo: RepoJson;
  chunksMs: number;
  cpu: { engramS: number; postgresS: number | null };
}

async function fullRun(backend: Backend, repoDir: string): Promise<FullRun> {
  const cpu0 = process.cpuUsage();
  const pg0 = backend.name === 'postgres' ? postgresCpuMs() : null;
  const t0 = performance.now();
  const { id } = await api<{ id: string }>(backend, 'POST', '/v1/repos', { path: repoDir, name: 'bench' });
  const { ms, repo } = await waitIndexed(backend, id, t0);
  const cpu = process.cpuUsage(cpu0);
  const pg1 = pg0 === null ? null : postgresCpuMs();
  const chunksMs = (await waitJobsIdle(backend, t0)) - ms;
  return {
    id,
    ms,
    repo,
    chunksMs,
    cpu: {
      engramS: round((cpu.user + cpu.system) / 1e6, 2),
      postgresS: pg0 === null || pg1 === null ? null : round((pg1 - pg0) / 1000, 2),
    },
  };
}

/** The run of median time (the lower middle one of an even count); `runs` is not empty. */
const medianRun = <T extends { ms: number }>(runs: readonly T[]): T =>
  [...runs].sort((a, b) => a.ms - b.ms)[Math.floor((runs.length - 1) / 2)]!;

async function runOne(name: BackendName, repoDir: string, opts: Options): Promise<RunResult> {
  const backend = await startBackend(name, {
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    valkeyUrl: undefined,
    env: {
      // The server's bootstrap org (`default`) may index the repository where it is.
      CODE_ORG_DIRS: `default=${repoDir}`,
      CODE_PRECISE: String(opts.precise),
      ...(process.env.CODE_PARSE_THREADS === undefined ? {} : { CODE_PARSE_THREADS: process.env.CODE_PARSE_THREADS }),
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    },
  });
  current = backend;
  try {
    const runs: FullRun[] = [];
    for (let i = 0; i < opts.runs; i++) {
      if (i > 0) await api(backend, 'DELETE', `/v1/repos/${runs[i - 1]!.id}`);
      log(`${name}: full index ${i + 1}/${opts.runs} of ${repoDir}`);
      const run = await fullRun(backend, repoDir);
      runs.push(run);
      const files = run.repo.counts?.files ?? 0;
      log(
        `${name}: ${files} files in ${fmt(run.ms / 1000, 2)} s (${fmt(files / (run.ms / 1000), 0)} files/s), ` +
          `CPU s: engram ${run.cpu.engramS}${run.cpu.postgresS === null ? '' : `, postgres ${run.cpu.postgresS}`}; ` +
          `ms by phase: ${phases(run.repo.progress.phaseMs)}`,
      );
    }
    const full = medianRun(runs);
    const last = runs.at(-1)!;
    const id = last.id;
    const files = full.repo.counts?.files ?? 0;

    // One file changes: a function is appended to a mid-sized JavaScript file, and committed.
    const changed = execFileSync('git', ['ls-files', '*.js'], { cwd: repoDir, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f !== '')
      .sort()[0];
    if (changed === undefined) throw new Error('the repository has no .js file to change');
    const abs = path.join(repoDir, changed);
    const original = readFileSync(abs, 'utf8');
    // As many one-file changes as full runs, each a new commit; the median one is reported.
    const incs: Array<{ ms: number; repo: RepoJson }> = [];
    for (let i = 0; i < opts.runs; i++) {
      writeFileSync(abs, `${original}\nexport function engramBenchChanged${i}() { return ${i}; }\n`);
      git(repoDir, 'commit', '-qam', `one-file change ${i + 1}`);
      const t1 = performance.now();
      await api(backend, 'POST', `/v1/repos/${id}/index`);
      const run = await waitIndexed(backend, id, t1);
      await waitJobsIdle(backend, t1);
      incs.push(run);
      log(`${name}: one-file change re-indexed in ${fmt(run.ms)} ms (${run.repo.progress.parsed} parsed)`);
    }
    const inc = medianRun(incs);

    const t2 = performance.now();
    await api(backend, 'POST', `/v1/repos/${id}/index`);
    const same = await waitIndexed(backend, id, t2);
    await waitJobsIdle(backend, t2);
    log(`${name}: unchanged re-index in ${fmt(same.ms)} ms`);
    // The next backend starts from the same corpus.
    writeFileSync(abs, original);
    git(repoDir, 'commit', '-qam', 'one-file change undone');
    return {
      backend: name,
      files,
      symbols: full.repo.counts?.symbols ?? 0,
      edges: full.repo.counts?.edges ?? 0,
      full: {
        ms: round(full.ms, 0),
        filesPerSec: round(files / (full.ms / 1000), 0),
        runsMs: runs.map((r) => round(r.ms, 0)),
        phaseMs: full.repo.progress.phaseMs,
        chunksMs: round(full.chunksMs, 0),
        cpu: full.cpu,
      },
      incremental: {
        ms: round(inc.ms, 0),
        runsMs: incs.map((r) => round(r.ms, 0)),
        parsed: inc.repo.progress.parsed,
        unchanged: inc.repo.progress.unchanged,
        phaseMs: inc.repo.progress.phaseMs,
      },
      unchanged: { ms: round(same.ms, 0), parsed: same.repo.progress.parsed },
      peakRssMb: round(rssMb(), 0),
    };
  } finally {
    await backend.close();
  }
}

const phases = (p: Record<string, number>) =>
  ['checkout', 'walking', 'parsing', 'resolving', 'precise']
    .filter((k) => p[k] !== undefined)
    .map((k) => `${k} ${p[k]}`)
    .join(', ');

runBench({
  help: HELP,
  parse,
  cleanup: async () => {
    await current?.close();
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  },
  main: async (opts, facts) => {
    root = mkdtempSync(path.join(tmpdir(), 'engram-bench-index-'));
    try {
      const repoDir = path.join(root, 'repo');
      log(`copying ${opts.source} into a git repository`);
      cpSync(opts.source, repoDir, { recursive: true, dereference: true });
      git(repoDir, 'init', '-q', '-b', 'main');
      git(repoDir, 'add', '-A');
      git(repoDir, 'commit', '-qm', 'benchmark corpus');
      const results = await forEachBackend(
        opts.backends,
        (name) => runOne(name, repoDir, opts),
        (name, error): RunResult => ({
          backend: name,
          files: 0,
          symbols: 0,
          edges: 0,
          full: { ms: 0, filesPerSec: 0, runsMs: [], phaseMs: {}, chunksMs: 0, cpu: { engramS: 0, postgresS: null } },
          incremental: { ms: 0, runsMs: [], parsed: 0, unchanged: 0, phaseMs: {} },
          unchanged: { ms: 0, parsed: 0 },
          peakRssMb: 0,
          error,
        }),
      );
      process.stdout.write(
        `\nCode index speed: ${path.relative(process.cwd(), opts.source) || opts.source}, precise pass ${opts.precise ? 'on' : 'off'}\n\n`,
      );
      process.stdout.write(
        `${table(
          [
            'backend',
            'files',
            'symbols',
            'edges',
            'full s',
            'files/s',
            'first run s',
            'CPU s',
            'one-file ms',
            'unchanged ms',
            'chunks s',
            'peak RSS MB',
          ],
          results.map((r) => [
            r.backend,
            String(r.files),
            String(r.symbols),
            String(r.edges),
            fmt(r.full.ms / 1000, 2),
            String(r.full.filesPerSec),
            r.full.runsMs[0] === undefined ? '' : fmt(r.full.runsMs[0] / 1000, 2),
            r.full.cpu.postgresS === null
              ? fmt(r.full.cpu.engramS, 1)
              : `${fmt(r.full.cpu.engramS, 1)} + ${fmt(r.full.cpu.postgresS, 1)}`,
            String(r.incremental.ms),
            String(r.unchanged.ms),
            fmt(r.full.chunksMs / 1000, 1),
            String(r.peakRssMb),
          ]),
        )}\n`,
      );
      for (const r of results) {
        if (r.error !== undefined) process.stdout.write(`${r.backend}: failed: ${r.error}\n`);
        else {
          process.stdout.write(
            `${r.backend} full runs, s: ${r.full.runsMs.map((ms) => fmt(ms / 1000, 2)).join(', ')} (median above)\n`,
          );
          process.stdout.write(`${r.backend} median full run, ms by phase: ${phases(r.full.phaseMs)}\n`);
          process.stdout.write(`${r.backend} one-file runs, ms: ${r.incremental.runsMs.join(', ')} (median above)\n`);
          process.stdout.write(`${r.backend} median one-file run, ms by phase: ${phases(r.incremental.phaseMs)}\n`);
        }
      }
      writeResult(opts.out, 'code-index', facts, { options: { ...opts }, results });
      return results.some((r) => r.error !== undefined) ? 1 : 0;
    } finally {
      rmSync(root, { recursive: true, force: true });
      root = undefined;
    }
  },
});
