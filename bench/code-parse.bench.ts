/**
 * Code parse benchmark: the tree-sitter pass of the code indexer (parse,
 * tags + import queries, symbol/reference/import extraction) over every
 * .js/.ts/.tsx/.py/.go/.java/.rs file under a directory, on one thread.
 *
 *   npm run bench:code-parse -- [--dir node_modules] [--max-files 5000] [--max-bytes 1048576] [--out bench/results]
 *
 * Files are read up front, so the numbers are parse throughput, not disk.
 * The target: ≥ 500 files/s for the full pass on 2 cores.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createTreeSitterParser } from '../src/code/tree-sitter-parser.ts';
import type { CodeLanguage } from '../src/ports/code-parser.ts';
import { DEFAULT_RESULTS_DIR, fmt, log, positiveInt, runBench, writeResult } from './lib/cli.ts';
import { round, table } from './lib/stats.ts';

const HELP = `Usage: npm run bench:code-parse -- [options]

  --dir <path>          directory to walk (default node_modules)
  --max-files <n>       stop after this many files (default 5000)
  --max-bytes <n>       skip files larger than this (default 1048576)
  --out <dir>           where to write the JSON (default bench/results)
  --help
`;

interface Options {
  readonly help: boolean;
  readonly dir: string;
  readonly maxFiles: number;
  readonly maxBytes: number;
  readonly out: string;
}

interface Row {
  language: string;
  files: number;
  bytes: number;
  ms: number;
  symbols: number;
  refs: number;
  imports: number;
  errors: number;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', default: false },
      dir: { type: 'string' },
      'max-files': { type: 'string' },
      'max-bytes': { type: 'string' },
      out: { type: 'string' },
    },
  });
  return {
    help: values.help,
    dir: values.dir ?? 'node_modules',
    maxFiles: positiveInt('max-files', values['max-files'], 5000),
    maxBytes: positiveInt('max-bytes', values['max-bytes'], 1024 * 1024),
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}

/** Depth-first, sorted, so that two runs over the same tree parse the same files. */
function collect(
  dir: string,
  languageOf: (p: string) => CodeLanguage | undefined,
  opts: Options,
  out: { file: string; language: CodeLanguage }[],
): void {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const name of entries) {
    if (out.length >= opts.maxFiles) return;
    const full = path.join(dir, name);
    let st;
    try {
      st = statSync(full);
    } catch {
      continue;
    }
    if (st.isDirectory()) collect(full, languageOf, opts, out);
    else if (st.isFile() && st.size <= opts.maxBytes) {
      const language = languageOf(name);
      if (language !== undefined) out.push({ file: full, language });
    }
  }
}

async function main(opts: Options, facts: Parameters<Parameters<typeof runBench>[0]['main']>[1]): Promise<number> {
  const t0 = performance.now();
  const parser = await createTreeSitterParser();
  const loadMs = performance.now() - t0;
  const found: { file: string; language: CodeLanguage }[] = [];
  collect(opts.dir, (p) => parser.languageOf(p), opts, found);
  const files = found.map((f) => ({ ...f, source: readFileSync(f.file, 'utf8') }));
  log(`parsing ${files.length} files under ${opts.dir} (grammars loaded in ${fmt(loadMs)} ms)`);

  // First parse per language compiles its query: measured apart from throughput.
  const warm = new Map<CodeLanguage, number>();
  for (const f of files) {
    if (warm.has(f.language)) continue;
    const w0 = performance.now();
    parser.parse(f.language, '');
    warm.set(f.language, performance.now() - w0);
  }

  const rows = new Map<string, Row>();
  const row = (language: string): Row => {
    let r = rows.get(language);
    if (r === undefined) {
      r = { language, files: 0, bytes: 0, ms: 0, symbols: 0, refs: 0, imports: 0, errors: 0 };
      rows.set(language, r);
    }
    return r;
  };
  let peakRss = process.memoryUsage().rss;
  const total = row('all');
  for (const [i, f] of files.entries()) {
    const s0 = performance.now();
    const parsed = parser.parse(f.language, f.source);
    const ms = performance.now() - s0;
    for (const r of [row(f.language), total]) {
      r.files++;
      r.bytes += Buffer.byteLength(f.source);
      r.ms += ms;
      r.symbols += parsed.symbols.length;
      r.refs += parsed.references.length;
      r.imports += parsed.imports.length;
      r.errors += parsed.errorCount > 0 ? 1 : 0;
    }
    if (i % 100 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  peakRss = Math.max(peakRss, process.memoryUsage().rss);

  const ordered = [...rows.values()].sort((a, b) =>
    a.language === 'all' ? 1 : b.language === 'all' ? -1 : b.files - a.files,
  );
  const summary = ordered.map((r) => ({
    ...r,
    mb: round(r.bytes / 2 ** 20, 2),
    filesPerSec: round((r.files / r.ms) * 1000, 0),
    mbPerSec: round(r.bytes / 2 ** 20 / (r.ms / 1000), 2),
    ms: round(r.ms, 0),
    queryCompileMs: r.language === 'all' ? undefined : round(warm.get(r.language as CodeLanguage) ?? 0, 0),
  }));
  const header = [
    'language',
    'files',
    'MB',
    'files/s',
    'MB/s',
    'symbols',
    'refs',
    'imports',
    'w/ errors',
    'compile ms',
  ];
  process.stdout.write(
    `\nCode parse (tree-sitter, one thread) over ${opts.dir}; peak RSS ${fmt(peakRss / 2 ** 20, 0)} MB\n\n${table(
      header,
      summary.map((r) => [
        r.language,
        r.files,
        fmt(r.mb, 2),
        r.filesPerSec,
        fmt(r.mbPerSec, 2),
        r.symbols,
        r.refs,
        r.imports,
        r.errors,
        r.queryCompileMs ?? '-',
      ]),
    )}\n`,
  );
  writeResult(opts.out, 'code-parse', facts, {
    options: { dir: opts.dir, maxFiles: opts.maxFiles, maxBytes: opts.maxBytes },
    grammarLoadMs: round(loadMs, 1),
    peakRssBytes: peakRss,
    results: summary,
  });
  return 0;
}

runBench({ help: HELP, parse, main, cleanup: async () => undefined });
