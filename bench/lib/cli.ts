import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKENDS, type BackendName } from './backend.ts';
import { gitCommit, machine, resultFileName } from './facts.ts';

/** What every benchmark script shares: option parsing, logging, the result file, Ctrl-C. */

export const positiveInt = (name: string, v: string | undefined, def: number): number => {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer (got ${v})`);
  return n;
};

/** A comma-separated option as a list of non-empty, trimmed items. */
export const list = (v: string | undefined, def: string): string[] =>
  (v ?? def)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

/** Progress goes to stderr so stdout keeps only the result tables. */
export const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

export const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

export const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** bench/results, where every benchmark writes its JSON unless told otherwise (git-ignored). */
export const DEFAULT_RESULTS_DIR = path.join(path.dirname(path.dirname(fileURLToPath(import.meta.url))), 'results');

/** What every result records besides its measurements: when, which code, which machine. */
export interface BenchFacts {
  readonly startedAt: Date;
  /** Taken before the server starts: the code measured is the code at this commit. */
  readonly commit: string | undefined;
  readonly machine: ReturnType<typeof machine>;
}

/**
 * Writes `<dir>/<benchmark>-<timestamp>.json` with the benchmark's name, the
 * facts, the finish time and `fields`, and says where on stdout.
 */
export function writeResult(
  dir: string,
  benchmark: string,
  facts: BenchFacts,
  fields: Record<string, unknown>,
): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, resultFileName(benchmark, facts.startedAt));
  const body = {
    benchmark,
    startedAt: facts.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    commit: facts.commit,
    machine: facts.machine,
    ...fields,
  };
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  process.stdout.write(`\nResults written to ${path.relative(process.cwd(), file)}\n`);
  return file;
}

/**
 * Runs a benchmark: parses the command line (printing `help` for --help),
 * takes the facts, runs `main` and sets the exit code from it. On Ctrl-C or
 * SIGTERM `cleanup` runs first (stop the server, drop the database, kill
 * child processes), then the process exits with 130.
 */
export function runBench<O extends { readonly help: boolean }>(bench: {
  readonly help: string;
  readonly parse: (argv: string[]) => O;
  readonly main: (opts: O, facts: BenchFacts) => Promise<number>;
  readonly cleanup: () => Promise<void>;
}): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: cleaning up`);
      void bench
        .cleanup()
        .catch(() => undefined)
        .finally(() => process.exit(130));
    });
  }
  const run = async (): Promise<number> => {
    const opts = bench.parse(process.argv.slice(2));
    if (opts.help) {
      process.stdout.write(bench.help);
      return 0;
    }
    return bench.main(opts, { startedAt: new Date(), commit: gitCommit(), machine: machine() });
  };
  run().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      log(`failed: ${errText(e)}`);
      process.exitCode = 1;
    },
  );
}

/** Runs each backend in turn; a backend that throws is recorded by `failed` and the next one still runs. */
export async function forEachBackend<R>(
  names: readonly BackendName[],
  run: (name: BackendName) => Promise<R>,
  failed: (name: BackendName, error: string) => R,
): Promise<R[]> {
  const results: R[] = [];
  for (const name of names) {
    try {
      results.push(await run(name));
    } catch (e) {
      log(`${name} failed: ${errText(e)}`);
      results.push(failed(name, errText(e)));
    }
  }
  return results;
}

/**
 * The options of every benchmark that seeds a store and serves it (parseArgs
 * spec); {@link storeOptions} reads them.
 */
export const STORE_OPTIONS = {
  backends: { type: 'string' },
  seed: { type: 'string' },
  'ingest-concurrency': { type: 'string' },
  'pool-max': { type: 'string' },
  keep: { type: 'boolean', default: false },
  reuse: { type: 'string' },
  'reuse-database': { type: 'string' },
  markdown: { type: 'boolean', default: false },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export function storeOptions(values: {
  backends?: string | undefined;
  seed?: string | undefined;
  'ingest-concurrency'?: string | undefined;
  'pool-max'?: string | undefined;
  keep?: boolean | undefined;
  reuse?: string | undefined;
  'reuse-database'?: string | undefined;
  markdown?: boolean | undefined;
  out?: string | undefined;
  help?: boolean | undefined;
}) {
  const backends = list(values.backends, BACKENDS.join(','));
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`unknown backend ${b}`);
  if (values.reuse !== undefined && backends.length !== 1) throw new Error('--reuse needs exactly one --backends');
  if (values['reuse-database'] !== undefined && values.reuse === undefined) {
    throw new Error('--reuse-database goes with --reuse <data dir>');
  }
  return {
    help: values.help === true,
    backends: backends as BackendName[],
    seed: positiveInt('seed', values.seed, 42),
    ingestConcurrency: positiveInt('ingest-concurrency', values['ingest-concurrency'], 8),
    poolMax: values['pool-max'] === undefined ? undefined : positiveInt('pool-max', values['pool-max'], 10),
    keep: values.keep === true,
    reuse:
      values.reuse === undefined
        ? undefined
        : { dataDir: path.resolve(values.reuse), database: values['reuse-database'] },
    markdown: values.markdown === true,
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}
