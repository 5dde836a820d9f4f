/**
 * Code accuracy benchmark: how right Engram's code graph is for real
 * TypeScript, scored against the TypeScript compiler as ground truth.
 *
 *   npm run bench:code-accuracy -- [--corpora engram,zod,pg-protocol] [--sites n] [--symbols n] [--seed 1] [--out bench/results]
 *
 * Each corpus (a directory of .ts sources, copied with a tsconfig into a temp
 * directory) is indexed by an in-process engram on PGlite twice: heuristic
 * only (CODE_PRECISE=false: tree-sitter, import-aware resolution, oxc-resolver)
 * and with the precise pass. Ground truth comes from the type checker
 * (getSymbolAtLocation, aliases followed), over every identifier of the corpus
 * outside import/export clauses whose declaration is a symbol Engram indexes:
 *
 * - definition: the target of the reference at a position (what
 *   get_definition answers for the name written there). Precision over a
 *   sample of Engram's resolved references; recall over a sample of the
 *   ground-truth sites.
 * - find_references: for a sample of symbols with references, Engram's
 *   answer (CodeQueryService.findReferences by SCIP id) against the checker's
 *   reference sites, micro-averaged.
 *
 * The target: precision ≥ 0.97 and recall ≥ 0.95 with the precise pass.
 */
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import pino from 'pino';
import ts from 'typescript';
import { v7 as uuidv7 } from 'uuid';
import { loadConfig } from '../src/config/config.ts';
import { ALL_SCOPES, type RequestContext } from '../src/domain/tenancy/tenancy.types.ts';
import { inImportOrExport, isDeclarationName } from '../src/code/ts-precise.ts';
import { openEngram, type Engram } from '../src/main.ts';
import { DEFAULT_RESULTS_DIR, fmt, list, log, positiveInt, runBench, writeResult } from './lib/cli.ts';
import { round, table } from './lib/stats.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** Corpora: a source directory and the tsconfig compiler options to check it with. */
const CORPORA: Readonly<Record<string, { dir: string; tsconfig: string | ts.CompilerOptions }>> = {
  engram: { dir: path.join(ROOT, 'src'), tsconfig: path.join(ROOT, 'tsconfig.json') },
  zod: { dir: path.join(ROOT, 'node_modules/zod/src/v4'), tsconfig: {} },
  'pg-protocol': { dir: path.join(ROOT, 'node_modules/pg-protocol/src'), tsconfig: {} },
};
const BASE_OPTIONS = { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', strict: true };

const HELP = `Usage: npm run bench:code-accuracy -- [options]

  --corpora <list>   ${Object.keys(CORPORA).join(', ')} (default all)
  --sites <n>        reference sites sampled for definition precision and recall (default: all)
  --symbols <n>      symbols sampled for find_references (default: all)
  --seed <n>         sampling seed (default 1)
  --out <dir>        where to write the JSON (default bench/results)
  --help
`;

interface Options {
  readonly help: boolean;
  readonly corpora: string[];
  readonly sites: number;
  readonly symbols: number;
  readonly seed: number;
  readonly out: string;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', default: false },
      corpora: { type: 'string' },
      sites: { type: 'string' },
      symbols: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const corpora = list(values.corpora, Object.keys(CORPORA).join(','));
  for (const c of corpora) if (CORPORA[c] === undefined) throw new Error(`unknown corpus ${c}`);
  return {
    help: values.help,
    corpora,
    // All by default: samples of 150 symbols gave zod's heuristic references precision anywhere
    // from 0.93 to 1.00 depending on which symbols were drawn; the whole set takes ~5 min for the three corpora.
    sites: positiveInt('sites', values.sites, Number.MAX_SAFE_INTEGER),
    symbols: positiveInt('symbols', values.symbols, Number.MAX_SAFE_INTEGER),
    seed: positiveInt('seed', values.seed, 1),
    out: values.out ?? DEFAULT_RESULTS_DIR,
  };
}

/** mulberry32: a seeded sample, the same every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function sample<T>(items: readonly T[], n: number, seed: number): T[] {
  const r = rng(seed);
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy.slice(0, n);
}

/** `path:line:column` (UTF-16 column), the key both sides agree on. */
const key = (p: string, line: number, col: number): string => `${p}:${line}:${col}`;

/** Where a node starts, in Engram's units: zero-based line and UTF-16 column (as tree-sitter and TypeScript count). */
function posKey(root: string, sf: ts.SourceFile, pos: number): string {
  const lc = sf.getLineAndCharacterOfPosition(pos);
  return key(path.relative(root, sf.fileName).split(path.sep).join('/'), lc.line, lc.character);
}

/** A checkout of the corpus: its sources under src/, a tsconfig, node_modules linked for library types. */
function prepare(name: string): string {
  const c = CORPORA[name];
  if (c === undefined || !existsSync(c.dir)) throw new Error(`corpus ${name}: ${c?.dir ?? '?'} not found`);
  const dir = mkdtempSync(path.join(tmpdir(), `engram-acc-${name}-`));
  cpSync(c.dir, path.join(dir, 'src'), {
    recursive: true,
    filter: (p) => !/\.(test|spec)\.ts$|\/tests?\//.test(p),
  });
  const options =
    typeof c.tsconfig === 'string'
      ? (ts.readConfigFile(c.tsconfig, (p) => ts.sys.readFile(p)).config as { compilerOptions?: object })
          .compilerOptions
      : { ...BASE_OPTIONS, ...c.tsconfig };
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...options, noEmit: true } }));
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: `bench-${name}`, version: '0.0.0', type: 'module' }),
  );
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

interface Anchor {
  readonly id: string;
  readonly scip: string;
}
interface Indexed {
  readonly engram: Engram;
  readonly ctx: RequestContext;
  readonly repoId: string;
  /** Symbol by the position of its name. */
  readonly anchors: Map<string, Anchor>;
  /** Resolved reference edges: position → target symbol id. */
  readonly edges: Map<string, string>;
  readonly files: string[];
  readonly indexMs: number;
}

async function index(dir: string, precise: boolean): Promise<Indexed> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'engram-acc-data-'));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  const slug = `acc-${uuidv7().slice(-8)}`;
  const config = loadConfig({
    ENGRAM_DATA_DIR: dataDir,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent',
    REEMBED_INTERVAL_MS: '0',
    RATE_LIMIT_ENABLED: 'false',
    EMBEDDER: 'builtin',
    CODE_ORG_DIRS: `${slug}=${dir}`,
    CODE_PRECISE: String(precise),
  });
  const engram = await openEngram(config, { log: pino({ level: process.env.BENCH_LOG_LEVEL ?? 'silent' }) });
  const org = await engram.system.insertOrg({
    id: uuidv7(),
    slug,
    name: 'accuracy',
    region: config.residency.region,
  });
  const ctx: RequestContext = {
    orgId: org.id,
    actor: { type: 'system', id: 'bench' },
    roles: [],
    scopes: new Set(ALL_SCOPES),
    authMethod: 'api_key',
    requestId: 'bench',
  };
  const t0 = performance.now();
  const repo = await engram.repos.register(ctx, { path: dir });
  await engram.worker.drain();
  const indexMs = performance.now() - t0;
  const indexed = await engram.repos.get(ctx, repo.id);
  if (indexed.repo.status !== 'indexed')
    throw new Error(`indexing failed: ${indexed.repo.lastError ?? indexed.repo.status}`);
  const rows = await engram.database.db.transaction().execute(async (tx) => {
    await sql`SELECT set_config('role', 'engram_app', true), set_config('app.current_org_id', ${org.id}, true)`.execute(
      tx,
    );
    const symbols = await sql<{ id: string; scip: string; path: string; line: number; col: number }>`
      SELECT s.id, s.scip_symbol AS scip, f.path, s.name_line AS line, s.name_col AS col FROM code_symbols s
        JOIN code_files f ON f.id = s.file_id WHERE s.repo_id = ${repo.id}`.execute(tx);
    const edges = await sql<{ path: string; line: number; col: number; dst: string }>`
      SELECT f.path, e.start_line AS line, e.start_col AS col, e.dst_id AS dst FROM code_edges e
        JOIN code_files f ON f.id = e.file_id
      WHERE e.repo_id = ${repo.id} AND e.dst_kind = 'symbol' AND e.start_line IS NOT NULL
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')`.execute(tx);
    // In path order: the checker's program is built from this list, and for a name with several
    // declarations the first one it meets is the ground truth.
    const files = await sql<{ path: string }>`SELECT path FROM code_files WHERE repo_id = ${repo.id}
      ORDER BY path`.execute(tx);
    return { symbols: symbols.rows, edges: edges.rows, files: files.rows.map((f) => f.path) };
  });
  return {
    engram,
    ctx,
    repoId: repo.id,
    anchors: new Map(rows.symbols.map((s) => [key(s.path, s.line, s.col), { id: s.id, scip: s.scip }])),
    edges: new Map(rows.edges.map((e) => [key(e.path, e.line, e.col), e.dst])),
    files: rows.files,
    indexMs,
  };
}

/**
 * The checker's answer for every identifier that is not a declaration's own
 * name: the declaration's name position (aliases followed), kept when it is
 * one of Engram's symbols: reference position → declaration name position
 * (the same in every index of the corpus, unlike symbol ids).
 */
function groundTruth(dir: string, files: readonly string[], anchors: Map<string, Anchor>): Map<string, string> {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    path.join(dir, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: () => undefined,
    },
  );
  const program = ts.createProgram(
    files.filter((f) => /\.(ts|tsx|mts|cts|js|jsx)$/.test(f)).map((f) => path.join(dir, f)),
    { ...(parsed?.options ?? {}), noEmit: true, allowJs: true, skipLibCheck: true },
  );
  const checker = program.getTypeChecker();
  const truth = new Map<string, string>();
  for (const sf of program.getSourceFiles()) {
    if (!sf.fileName.startsWith(dir) || sf.fileName.includes('/node_modules/')) continue;
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n) && !inImportOrExport(n)) {
        if (!isDeclarationName(n)) {
          let sym = checker.getSymbolAtLocation(n);
          if (sym !== undefined && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
          for (const d of sym?.declarations ?? []) {
            const name = ts.getNameOfDeclaration(d);
            const dsf = d.getSourceFile();
            if (name === undefined || !dsf.fileName.startsWith(dir)) continue;
            const decl = posKey(dir, dsf, name.getStart(dsf));
            if (anchors.has(decl)) {
              truth.set(posKey(dir, sf, n.getStart(sf)), decl);
              break;
            }
          }
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  return truth;
}

const ratio = (a: number, b: number): number => (b === 0 ? Number.NaN : a / b);

async function score(ix: Indexed, declarations: Map<string, string>, opts: Options) {
  const truth = new Map<string, string>();
  for (const [site, decl] of declarations) {
    const id = ix.anchors.get(decl)?.id;
    if (id !== undefined) truth.set(site, id);
  }
  // Samples are drawn from lists in position order: rows and ids come in the order files were parsed
  // (largest first), and a sample taken in that order would change whenever the parse order does.
  const byPosition = <T>(entries: Iterable<[string, T]>): Array<[string, T]> =>
    [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // Definition precision: Engram's resolved references, checked against the checker.
  const answers = sample(byPosition(ix.edges.entries()), opts.sites, opts.seed);
  const defPrecision = answers.filter(([k, dst]) => truth.get(k) === dst).length;
  // Definition recall: the checker's sites, looked up in Engram.
  const expected = sample(byPosition(truth.entries()), opts.sites, opts.seed + 1);
  const defRecall = expected.filter(([k, dst]) => ix.edges.get(k) === dst).length;
  if (process.env.BENCH_SHOW_MISSES !== undefined) {
    const nameOf = new Map([...ix.anchors.entries()].map(([k, a]) => [a.id, `${a.scip.split(' ').pop() ?? ''}@${k}`]));
    const show = (what: string, k: string, want: string | undefined, got: string | undefined) =>
      log(
        `${what} ${k}: engram ${got === undefined ? '-' : nameOf.get(got)} checker ${want === undefined ? '-' : nameOf.get(want)}`,
      );
    for (const [k, dst] of answers.filter(([k, dst]) => truth.get(k) !== dst).slice(0, 15))
      show('P-miss', k, truth.get(k), dst);
    for (const [k, dst] of expected.filter(([k, dst]) => ix.edges.get(k) !== dst).slice(0, 15))
      show('R-miss', k, dst, ix.edges.get(k));
  }

  // find_references, for symbols the checker sees referenced.
  const bySymbol = new Map<string, Set<string>>();
  for (const [k, id] of truth) bySymbol.set(id, (bySymbol.get(id) ?? new Set()).add(k));
  const scipOf = new Map([...ix.anchors.values()].map((a) => [a.id, a.scip]));
  // Symbols by the position of their name, not by id (ids follow the parse order).
  const declOf = new Map([...ix.anchors.entries()].map(([k, a]) => [a.id, k]));
  const symbols = sample(
    byPosition([...bySymbol.keys()].map((id): [string, string] => [declOf.get(id) ?? id, id])),
    opts.symbols,
    opts.seed + 2,
  ).map(([, id]) => id);
  let tp = 0;
  let answered = 0;
  let want = 0;
  for (const id of symbols) {
    const gt = bySymbol.get(id) ?? new Set<string>();
    const r = await ix.engram.code.findReferences(ix.ctx, scipOf.get(id) ?? '', { repoId: ix.repoId, limit: 10_000 });
    const got = new Set(
      r.references
        .filter((x) => x.target.id === id && x.span !== null)
        .map((x) => key(x.path, x.span?.startLine ?? 0, x.span?.startColumn ?? 0)),
    );
    answered += got.size;
    want += gt.size;
    for (const k of got) if (gt.has(k)) tp += 1;
    if (process.env.BENCH_SHOW_MISSES !== undefined) {
      for (const k of [...got].filter((x) => !gt.has(x)).slice(0, 5)) {
        log(`refs P-miss ${scipOf.get(id)?.split(' ').pop() ?? id} at ${k}: checker ${declarations.get(k) ?? '-'}`);
      }
    }
  }
  return {
    definition: { tp: defPrecision, answered: answers.length, expected: expected.length, recallTp: defRecall },
    references: { tp, answered, expected: want, symbols: symbols.length },
  };
}

const cleanups: Array<() => Promise<void>> = [];

runBench({
  help: HELP,
  parse,
  cleanup: async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  },
  main: async (opts, facts) => {
    const rows: (string | number)[][] = [];
    const results: Record<string, unknown>[] = [];
    for (const name of opts.corpora) {
      const dir = prepare(name);
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      let truth: Map<string, string> | undefined;
      for (const precise of [false, true]) {
        const mode = precise ? 'precise' : 'heuristic';
        log(`${name}: indexing (${mode})`);
        const ix = await index(dir, precise);
        let open = true;
        const close = async () => {
          if (open) await ix.engram.close();
          open = false;
        };
        cleanups.push(close);
        truth ??= groundTruth(dir, ix.files, ix.anchors);
        log(`${name}: ${ix.files.length} files, ${ix.anchors.size} symbols, ${truth.size} ground-truth sites`);
        const s = await score(ix, truth, opts);
        await close();
        const r = {
          corpus: name,
          mode,
          files: ix.files.length,
          symbols: ix.anchors.size,
          groundTruthSites: truth.size,
          resolvedEdges: ix.edges.size,
          indexSeconds: round(ix.indexMs / 1000, 1),
          definition: {
            precision: round(ratio(s.definition.tp, s.definition.answered), 4),
            recall: round(ratio(s.definition.recallTp, s.definition.expected), 4),
            sampled: { answers: s.definition.answered, sites: s.definition.expected },
          },
          references: {
            precision: round(ratio(s.references.tp, s.references.answered), 4),
            recall: round(ratio(s.references.tp, s.references.expected), 4),
            symbols: s.references.symbols,
            answered: s.references.answered,
            expected: s.references.expected,
          },
        };
        results.push(r);
        rows.push([
          name,
          mode,
          String(r.files),
          fmt(r.indexSeconds),
          fmt(r.definition.precision, 3),
          fmt(r.definition.recall, 3),
          fmt(r.references.precision, 3),
          fmt(r.references.recall, 3),
        ]);
      }
    }
    process.stdout.write(
      `${table(['corpus', 'mode', 'files', 'index s', 'def P', 'def R', 'refs P', 'refs R'], rows)}\n`,
    );
    writeResult(opts.out, 'code-accuracy', facts, { options: opts, results });
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    return 0;
  },
});
