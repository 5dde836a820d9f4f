import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { AppError, errors } from '../../errors.ts';
import type { CodeAnalysis, PreciseDefinition, PreciseOccurrence, PreciseSession } from '../../ports/code-analysis.ts';
import type { CodeLanguage, CodeParser, ParsedFile, ParserPool, ReferenceKind, Span } from '../../ports/code-parser.ts';
import type {
  EdgeRow,
  EdgeTargetUpdate,
  ImportTarget,
  IndexedFile,
  PackageRow,
  ReferenceSite,
  StoredFile,
  SymbolAnchor,
  SymbolRow,
} from '../../ports/code-store.ts';
import type { RepoWorkspace, WalkedFile } from '../../ports/repo-workspace.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import type { Job } from '../jobs/job.types.ts';
import { describeJobError, type JobHandler } from '../jobs/job.worker.ts';
import {
  CONFIDENCE,
  EMPTY_PROGRESS,
  INDEX_REPO,
  type EdgeKind,
  type IndexProgress,
  type PackageIdentity,
  type Repo,
  type RepoManifest,
} from './code.types.ts';
import { resolveModule } from './module-resolution.ts';
import { fallbackPackage, fileDescriptors, scipSymbol, symbolDescriptor } from './scip.ts';

/** Files parsed per write transaction, at most. */
const WRITE_BATCH = 100;
/**
 * Symbols and edges per write transaction, beyond which a batch is written
 * before it has {@link WRITE_BATCH} files: a file with thousands of symbols
 * goes to the database alone, while the next files are parsed.
 */
const WRITE_ROWS = 2_000;
/** Files walked between progress updates when nothing needs writing. */
const PROGRESS_EVERY = 500;
/** Rows per delete of removed files. */
const DELETE_BATCH = 500;
/**
 * Files (re)written or removed by a run above which planner statistics are
 * refreshed before resolving: on a table just filled, the planner guesses one
 * row per repository and loops — 150 s instead of 80 ms for 2,300 files.
 */
const ANALYZE_AFTER_FILES = 50;
/**
 * Files read and parsed ahead of the one being added to a batch: two
 * batches, so that the parser threads keep working while a batch is written.
 */
const PREPARE_WINDOW = 2 * WRITE_BATCH;
/** A file modified less than this before it was read is hashed again next run, whatever its mtime says. */
const RACY_MS = 2_000;

const REF_EDGES: Readonly<Record<ReferenceKind, EdgeKind>> = {
  call: 'CALLS',
  reference: 'REFERENCES',
  type: 'REFERENCES',
  extends: 'EXTENDS',
  implements: 'IMPLEMENTS',
};

/** Receivers that name the enclosing object: `this.x()` is looked up in the same file. */
const SELF = new Set(['this', 'self', 'cls', 'super', 'Self']);

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const samePackage = (a: PackageIdentity, b: PackageIdentity): boolean =>
  a.manager === b.manager && a.name === b.name && a.version === b.version;

export interface CodeIndexerDeps {
  readonly tenantDb: TenantDb;
  readonly parser: CodeParser;
  /** Parser threads; without them files are parsed on this thread. */
  readonly parserPool?: ParserPool | undefined;
  readonly workspace: RepoWorkspace;
  /** JS/TS module resolution and the precise (compiler) pass; without it, only the built-in resolution runs. */
  readonly analysis?: CodeAnalysis | undefined;
  /**
   * Bytes of source files one repository may have to index (CODE_MAX_REPO_BYTES): a run whose walk
   * finds more, or that reads more, fails without retries. Unlimited when undefined.
   */
  readonly maxRepoBytes?: number | undefined;
  /**
   * Bytes of source files one org may have indexed across all its repositories (CODE_MAX_ORG_BYTES):
   * a run whose walk would take the org past it fails before reading anything, without retries,
   * leaving the repository's previous index as it was. Unlimited when undefined.
   */
  readonly maxOrgBytes?: number | undefined;
  /** The precise pass: on (default) and the JS/TS file count above which a repository skips it. */
  readonly precise?: { readonly enabled: boolean; readonly maxFiles: number } | undefined;
  /** Planner statistics, refreshed after a run rewrote many files (see {@link ANALYZE_AFTER_FILES}). */
  readonly statistics?: Pick<SystemStore, 'analyzeCodeGraph'> | undefined;
  /**
   * Reclaims the rows a run replaced, on a store without autovacuum (the
   * embedded one): each run ends with {@link CODE_GRAPH_TABLES} vacuumed where
   * their dead rows passed autovacuum's threshold.
   */
  readonly vacuum?: Pick<SystemStore, 'vacuum'> | undefined;
}

/** The tables a run rewrites. */
const CODE_GRAPH_TABLES: readonly string[] = ['code_files', 'code_symbols', 'code_edges', 'code_packages'];

const JS_LANGUAGES: readonly CodeLanguage[] = ['javascript', 'typescript', 'tsx'];
const isJs = (l: CodeLanguage): boolean => JS_LANGUAGES.includes(l);
/** Reference sites asked of the compiler between yields to the event loop. */
const PRECISE_YIELD_EVERY = 200;

/** Build output directories whose sources usually live under `src/`. */
const BUILD_DIRS = new Set(['dist', 'lib', 'build', 'out', 'esm', 'cjs', 'types']);

/**
 * The repository file a package's entry point names: each candidate as
 * written (with TypeScript's `.js` → `.ts` and index resolution), its `.d.ts`
 * as the source next to it, and build output mapped back to `src/`.
 */
export function entryFile(dir: string, candidates: readonly string[], has: (p: string) => boolean): string | undefined {
  for (const c of candidates) {
    const rel = dir === '' ? c : c.slice(dir.length + 1);
    const base = rel.replace(/\.d\.(m|c)?ts$/, '.$1js');
    const segs = base.split('/');
    const variants = [base];
    if (segs.length > 1 && BUILD_DIRS.has(segs[0] ?? '')) {
      variants.push(['src', ...segs.slice(1)].join('/'), segs.slice(1).join('/'), `src/${segs.at(-1) ?? ''}`);
    }
    for (const v of variants) {
      const hit = resolveModule('typescript', dir === '' ? 'x' : `${dir}/x`, `./${v}`, has);
      if (hit !== undefined) return hit;
    }
  }
  return undefined;
}

/** The `code_packages` rows of a manifest, entry points mapped to indexed files. */
export function packageRows(manifest: RepoManifest, has: (p: string) => boolean): PackageRow[] {
  return [
    ...manifest.provides.map((p) => ({
      role: 'provides' as const,
      manager: p.manager,
      name: p.name,
      version: p.version,
      dependencyKind: null,
      dir: p.dir,
      entryPath: entryFile(p.dir, p.entryCandidates, has) ?? null,
    })),
    ...manifest.dependencies.map((d) => ({
      role: 'depends' as const,
      manager: d.manager,
      name: d.name,
      version: d.version,
      dependencyKind: d.kind,
      dir: d.dir,
      entryPath: null,
    })),
  ];
}

/** How a name written in a file is bound by that file's imports. */
interface ImportBinding {
  readonly module: string;
  /** The name in the module (`default` imports keep the local name). */
  readonly name: string;
}

/**
 * Turns one parsed file into rows: its symbols with SCIP ids (each row holds
 * its file and parent: the DEFINES and CONTAINS edges of the model), IMPORTS
 * and one edge per reference — resolved to the same file when the name is
 * defined there (0.9), else left for the repository-wide pass with the import
 * it came through, if any. `importTarget` gives the id of the file a module
 * specifier resolves to: an IMPORTS edge then points at it (1.0), and the
 * names imported through it are looked up there first (`hintFileId`); without
 * an answer, the import is left for the run's resolution pass.
 */
export function buildIndexedFile(
  file: Omit<IndexedFile, 'symbols' | 'edges'>,
  parsed: ParsedFile,
  pkg: PackageIdentity,
  importTarget: (specifier: string) => string | undefined = () => undefined,
): IndexedFile {
  const ids = parsed.symbols.map(() => uuidv7());
  const base = fileDescriptors(file.path);
  const chains: string[] = [];
  const seen = new Map<string, number>();
  const chainOf = (i: number): string => {
    const cached = chains[i];
    if (cached !== undefined) return cached;
    const s = parsed.symbols[i];
    if (s === undefined) return '';
    const parent = s.parent === undefined || s.parent >= i ? '' : chainOf(s.parent);
    let d = parent + symbolDescriptor(s.kind, s.name);
    if (s.kind === 'function' || s.kind === 'method') {
      const n = seen.get(d) ?? 0;
      seen.set(d, n + 1);
      if (n > 0) d = parent + symbolDescriptor(s.kind, s.name, n);
    }
    chains[i] = d;
    return d;
  };
  const symbols: SymbolRow[] = parsed.symbols.map((s, i) => {
    const descriptor = base + chainOf(i);
    return {
      id: ids[i] as string,
      parentId: s.parent === undefined ? null : (ids[s.parent] ?? null),
      scipSymbol: scipSymbol(file.language, pkg, descriptor),
      descriptor,
      kind: s.kind,
      name: s.name,
      qualifiedName: s.qualifiedName,
      span: s.span,
      nameSpan: s.nameSpan,
      signature: s.signature,
      doc: s.doc ?? null,
      exported: s.exported,
    };
  });

  const fileNode = { kind: 'file' as const, id: file.id };
  const edges: EdgeRow[] = [];

  const names = new Map<string, ImportBinding>();
  const namespaces = new Map<string, string>();
  const targets = new Map<string, string | undefined>();
  for (const imp of parsed.imports) {
    if (!targets.has(imp.module)) {
      const target = importTarget(imp.module);
      targets.set(imp.module, target);
      edges.push({
        kind: 'IMPORTS',
        src: fileNode,
        dst: target === undefined ? undefined : { kind: 'file', id: target },
        dstName: imp.module,
        dstModule: imp.module,
        hintFileId: undefined,
        confidence: target === undefined ? CONFIDENCE.unresolved : CONFIDENCE.exact,
        span: imp.span,
      });
    }
    for (const n of imp.names) {
      if (n.name === '*') {
        if (n.alias !== undefined) namespaces.set(n.alias, imp.module);
      } else if (n.name === 'default') {
        if (n.alias !== undefined) names.set(n.alias, { module: imp.module, name: n.alias });
      } else {
        names.set(n.alias ?? n.name, { module: imp.module, name: n.name });
      }
    }
  }

  const byName = new Map<string, number[]>();
  parsed.symbols.forEach((s, i) => byName.set(s.name, [...(byName.get(s.name) ?? []), i]));
  const sameFile = (name: string, enclosing: number | undefined, viaSelf: boolean): number | undefined => {
    const candidates = byName.get(name);
    if (candidates === undefined) return undefined;
    if (viaSelf && enclosing !== undefined) {
      // `this.m()`: a member of the class around the caller.
      for (let owner = parsed.symbols[enclosing]?.parent; owner !== undefined;) {
        const hit = candidates.find((c) => parsed.symbols[c]?.parent === owner);
        if (hit !== undefined) return hit;
        owner = parsed.symbols[owner]?.parent;
      }
    }
    return candidates.find((c) => parsed.symbols[c]?.parent === undefined) ?? candidates[0];
  };

  for (const r of parsed.references) {
    const src =
      r.enclosing !== undefined && ids[r.enclosing] !== undefined
        ? { kind: 'symbol' as const, id: ids[r.enclosing] as string }
        : fileNode;
    const edge = {
      kind: REF_EDGES[r.kind],
      src,
      span: r.span,
      dst: undefined,
      hintFileId: undefined,
      confidence: CONFIDENCE.unresolved,
    };
    const ns = r.qualifier === undefined ? undefined : namespaces.get(r.qualifier);
    const imported = r.qualifier === undefined ? names.get(r.name) : undefined;
    if (ns !== undefined) {
      edges.push({ ...edge, dstName: r.name, dstModule: ns, hintFileId: targets.get(ns) });
    } else if (imported !== undefined) {
      edges.push({
        ...edge,
        dstName: imported.name,
        dstModule: imported.module,
        hintFileId: targets.get(imported.module),
      });
    } else {
      const viaSelf = r.qualifier !== undefined && SELF.has(r.qualifier);
      const local = r.qualifier === undefined || viaSelf ? sameFile(r.name, r.enclosing, viaSelf) : undefined;
      const localId = local === undefined ? undefined : ids[local];
      edges.push({
        ...edge,
        dstName: r.name,
        dstModule: undefined,
        ...(localId === undefined
          ? {}
          : { dst: { kind: 'symbol' as const, id: localId }, confidence: CONFIDENCE.sameFile }),
      });
    }
  }
  return { ...file, symbols, edges };
}

/**
 * Runs `index_repo` jobs: brings the repository's tree up to date (clone or
 * fetch for URLs), walks it, and re-parses only files whose SHA-256 changed
 * since the last run; files gone from the tree are deleted with their
 * symbols and edges. Then unresolved imports and references of the whole
 * repository are resolved again — edges into changed files were unlinked
 * when those files were rewritten — so a run that changed nothing costs one
 * walk and one hash per file. Progress is written as it goes.
 *
 * Only the job the repo names (`indexJobId`) may run it: a stale or duplicate
 * job does nothing, so two runs never write the same repository at once.
 */
export class CodeIndexer {
  constructor(private readonly deps: CodeIndexerDeps) {}

  get kind(): string {
    return INDEX_REPO;
  }

  handler(): JobHandler {
    return (job) => this.run(job).then(() => undefined);
  }

  /** Runs the job; undefined when it is not (or no longer) the repo's current job. */
  async run(job: Pick<Job, 'id' | 'orgId' | 'payload'>): Promise<IndexProgress | undefined> {
    const repoId = job.payload.repoId;
    if (typeof repoId !== 'string') throw errors.validation('index_repo needs a repoId');
    const repo = await this.deps.tenantDb.withTenant(job.orgId, async ({ code }) => {
      const current = await code.lockRepo(repoId);
      if (current === undefined || current.indexJobId !== job.id) return undefined;
      return code.updateRepo(repoId, {
        status: 'indexing',
        progress: { ...EMPTY_PROGRESS, phase: 'checkout' },
        lastError: null,
      });
    });
    if (repo === undefined) return undefined;
    try {
      return await this.index(job.orgId, repo);
    } catch (e) {
      await this.deps.tenantDb
        .withTenant(job.orgId, ({ code }) =>
          code.updateRepo(repoId, { status: 'failed', lastError: describeJobError(e) }),
        )
        .catch(() => undefined);
      throw e;
    }
  }

  private async index(orgId: string, repo: Repo): Promise<IndexProgress> {
    const { parser, workspace } = this.deps;
    const tenant = this.deps.tenantDb;
    // The parser threads start (about 0.5 s) while the checkout and the walk run.
    this.deps.parserPool?.warm();
    let progress: IndexProgress = { ...EMPTY_PROGRESS, phase: 'checkout' };
    let phaseStart = performance.now();
    /** Closes the current phase's clock; a new phase starts one. */
    const timed = (p: Partial<IndexProgress>): IndexProgress => {
      const now = performance.now();
      const spent = Math.round((progress.phaseMs[progress.phase] ?? 0) + now - phaseStart);
      phaseStart = now;
      return { ...progress, ...p, phaseMs: { ...progress.phaseMs, [progress.phase]: spent } };
    };
    const report = (p: Partial<IndexProgress>) =>
      tenant.withTenant(orgId, ({ code }) => code.updateRepo(repo.id, { progress: (progress = timed(p)) }));

    const checkout = await workspace.checkout(orgId, repo);
    const manifest = await workspace.manifest(checkout.root);
    const pkg = manifest.identity ?? fallbackPackage(repo.name);
    await report({ phase: 'walking' });
    const walk = await workspace.walk(checkout.root);
    const files: Array<WalkedFile & { language: CodeLanguage }> = [];
    for (const f of walk.files) {
      const language = parser.languageOf(f.path);
      if (language !== undefined) files.push({ ...f, language });
    }
    const maxBytes = this.deps.maxRepoBytes ?? Number.POSITIVE_INFINITY;
    const overQuota = (bytes: number) =>
      errors.limitExceeded(
        `The repository has ${bytes} bytes of source files to index, over this server's limit of ${maxBytes} (CODE_MAX_REPO_BYTES)`,
        { bytes, maxBytes },
      );
    const sourceBytes = files.reduce((n, f) => n + f.size, 0);
    if (sourceBytes > maxBytes) throw overQuota(sourceBytes);
    const maxOrgBytes = this.deps.maxOrgBytes;
    if (maxOrgBytes !== undefined) {
      // This run replaces the repository's own index, so only the org's other repositories count with it.
      const others = await tenant.withTenant(orgId, ({ code }) => code.sumOtherReposBytes(repo.id));
      const used = others + sourceBytes;
      if (used > maxOrgBytes) {
        throw errors.quotaExceeded(
          'org_bytes',
          maxOrgBytes,
          used,
          `Indexing the repository's ${sourceBytes} bytes of source files would take the org to ${used} bytes, over this server's limit of ${maxOrgBytes} (CODE_MAX_ORG_BYTES); delete a repository to index this one`,
        );
      }
    }
    // Files are read again by the run: one that grew since the walk counts with its new size.
    let bytesRead = 0;
    const read = async (f: WalkedFile): Promise<Uint8Array | undefined> => {
      const bytes = await walk.read(f);
      bytesRead += bytes?.length ?? 0;
      if (bytesRead > maxBytes) throw overQuota(bytesRead);
      return bytes;
    };
    const stored = await tenant.withTenant(orgId, ({ code }) => code.findFiles(repo.id));
    const storedByPath = new Map<string, StoredFile>(stored.map((s) => [s.path, s]));
    // Symbol ids embed the package's identity: when it changed, every file is rewritten.
    const rewriteAll = stored.length > 0 && (repo.package === null || !samePackage(repo.package, pkg));

    const walked = new Set(files.map((f) => f.path));
    const removed = stored.filter((s) => !walked.has(s.path)).map((s) => s.id);
    // Every walked file has its id before any is parsed, so that imports resolve as files are built.
    const fileIds = new Map(files.map((f) => [f.path, storedByPath.get(f.path)?.id ?? uuidv7()]));
    // The resolver reads manifests itself, following links: a repository with unsafe ones goes without it.
    const resolver =
      walk.unsafeResolverInputs.length === 0 ? this.deps.analysis?.moduleResolver(checkout.root) : undefined;
    /** The path a specifier resolves to: tsconfig paths, package exports and workspaces first, then the built-in rules. */
    const targetOf = (language: CodeLanguage, fromPath: string, specifier: string, has: (p: string) => boolean) => {
      const viaResolver = resolver !== undefined && isJs(language) ? resolver.resolve(fromPath, specifier) : undefined;
      return viaResolver !== undefined && has(viaResolver)
        ? viaResolver
        : resolveModule(language, fromPath, specifier, has);
    };
    const isWalked = (p: string) => walked.has(p);
    const deleteFiles = async (all: readonly string[]) => {
      for (let i = 0; i < all.length; i += DELETE_BATCH) {
        const ids = all.slice(i, i + DELETE_BATCH);
        await tenant.withTenant(orgId, ({ code }) => code.deleteFiles(repo.id, ids));
      }
    };
    await deleteFiles(removed);
    progress = {
      ...timed({}),
      phase: 'parsing',
      filesTotal: files.length,
      removed: removed.length,
      skippedTooLarge: walk.skippedTooLarge,
      skippedBinary: walk.skippedBinary,
      skippedLinks: walk.skippedLinks,
      truncated: walk.truncated,
    };
    await report({});

    // Paths in the index once this run is over, by file id: what imports may resolve to.
    const present = new Map<string, string>();
    let batch: IndexedFile[] = [];
    let batchRows = 0;
    let sinceReport = 0;
    // One write in flight while the next batch is parsed: the database works while this thread parses.
    let writing: Promise<void> = Promise.resolve();
    let writeFailure: { error: unknown } | undefined;
    const flush = async () => {
      await writing;
      if (writeFailure !== undefined) throw writeFailure.error;
      const rows = batch;
      const snapshot = progress;
      batch = [];
      batchRows = 0;
      sinceReport = 0;
      writing = tenant
        .withTenant(orgId, async ({ code }) => {
          await code.writeFiles(repo.id, rows);
          await code.updateRepo(repo.id, { progress: snapshot });
        })
        .catch((error: unknown) => {
          writeFailure = { error };
        });
    };
    const touched: Array<{ id: string; mtimeMs: number | null }> = [];
    const decoder = new TextDecoder('utf-8');
    // Files are read and parsed a window ahead (on the parser threads, when there are any), and taken in order.
    const ahead: Array<Promise<Awaited<ReturnType<CodeIndexer['prepare']>> | { fatal: AppError } | undefined>> = [];
    // Largest files first: parsing a large file takes long and writing it too, and at the end of a run
    // either would run alone (the other threads idle); early on, the two overlap with smaller files'.
    const order = [...files].sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1));
    let next = 0;
    const launch = () => {
      const f = order[next++];
      if (f !== undefined) {
        const importTarget = (specifier: string) => {
          const target = targetOf(f.language, f.path, specifier, isWalked);
          return target === undefined ? undefined : fileIds.get(target);
        };
        ahead.push(
          this.prepare(
            f,
            fileIds.get(f.path) as string,
            storedByPath.get(f.path),
            rewriteAll,
            pkg,
            decoder,
            importTarget,
            read,
            // A file that cannot be read or parsed is retried next run; a limit it exceeds stops this one.
          ).catch((error: unknown) => (error instanceof AppError && !error.retryable ? { fatal: error } : undefined)),
        );
      }
    };
    while (next < order.length && ahead.length < PREPARE_WINDOW) launch();
    // Walked files that did not make it into the index (unreadable, unparsable, binary). They keep no
    // stale rows, and edges built this run that point at them are unlinked, once everything is written.
    const dropped: string[] = [];
    for (const f of order) {
      const before = storedByPath.get(f.path);
      const counted = await ahead.shift();
      launch();
      if (typeof counted === 'object' && 'fatal' in counted) throw counted.fatal;
      if (counted === undefined) {
        // Retried next run.
        progress = { ...progress, failed: progress.failed + 1 };
        dropped.push(fileIds.get(f.path) as string);
      } else if (counted === 'binary') {
        progress = { ...progress, skippedBinary: progress.skippedBinary + 1 };
        dropped.push(fileIds.get(f.path) as string);
      } else if ('unchanged' in counted) {
        progress = { ...progress, unchanged: progress.unchanged + 1 };
        present.set(f.path, (before as StoredFile).id);
        if (counted.touch !== undefined) touched.push({ id: (before as StoredFile).id, mtimeMs: counted.touch });
      } else {
        progress = { ...progress, parsed: progress.parsed + 1 };
        present.set(f.path, counted.id);
        batch.push(counted);
        batchRows += counted.symbols.length + counted.edges.length;
        await yieldToLoop();
      }
      progress = { ...progress, filesDone: progress.filesDone + 1 };
      sinceReport += 1;
      if (batch.length >= WRITE_BATCH || batchRows >= WRITE_ROWS || sinceReport >= PROGRESS_EVERY) await flush();
    }
    await flush();
    await writing;
    if (writeFailure !== undefined) throw writeFailure.error;
    await deleteFiles(dropped);
    if (touched.length > 0) await tenant.withTenant(orgId, ({ code }) => code.touchFiles(repo.id, touched));

    const changed = progress.parsed > 0 || removed.length > 0 || progress.failed > 0;
    const has = (p: string) => present.has(p);
    if (changed) {
      await report({ phase: 'resolving' });
      if (progress.parsed + removed.length >= ANALYZE_AFTER_FILES) await this.deps.statistics?.analyzeCodeGraph();
      await tenant.withTenant(orgId, async ({ code }) => {
        const targets: ImportTarget[] = [];
        for (const u of await code.findUnresolvedImports(repo.id)) {
          // What is left: imports of unchanged files (a file they name may be new), imports unlinked
          // from a file rewritten or dropped by this run, and external modules.
          const target = targetOf(u.language, u.fromPath, u.specifier, has);
          const targetFileId = target === undefined ? undefined : present.get(target);
          if (targetFileId !== undefined) targets.push({ fileId: u.fileId, specifier: u.specifier, targetFileId });
        }
        await code.resolveImports(repo.id, targets);
        await code.resolveReferences(repo.id, true);
      });
    }
    // Packages are cheap to rewrite; links with other repositories are made again at every run,
    // since the other side may have been (re)indexed since.
    await tenant.withTenant(orgId, async ({ code }) => {
      await code.replacePackages(repo.id, packageRows(manifest, has));
      await code.resolveCrossRepoReferences(repo.id);
    });

    const precise = this.deps.precise ?? { enabled: true, maxFiles: 5_000 };
    const jsFiles = files.filter((f) => isJs(f.language) && present.has(f.path)).map((f) => f.path);
    if (changed && precise.enabled && this.deps.analysis !== undefined && jsFiles.length > 0) {
      if (jsFiles.length <= precise.maxFiles) {
        await report({ phase: 'precise' });
        const session = this.deps.analysis.openPrecise(checkout.root, jsFiles);
        if (session !== undefined) {
          try {
            // Read, ask the compiler outside any transaction, then write.
            const [sites, anchors] = await tenant.withTenant(orgId, ({ code }) =>
              Promise.all([code.findReferenceSites(repo.id, JS_LANGUAGES), code.findSymbolAnchors(repo.id)]),
            );
            const jsPresent = new Map(jsFiles.map((p) => [p, present.get(p) as string]));
            const { updates, inserts } = await precisePass(repo.id, jsPresent, sites, anchors, session);
            await tenant.withTenant(orgId, async ({ code }) => {
              await code.updateEdgeTargets(repo.id, updates);
              await code.insertEdges(repo.id, inserts);
            });
          } finally {
            session.close();
          }
        }
      }
    }

    // Rewritten files and re-resolved edges left dead rows; on the embedded store nothing else reclaims them.
    await this.deps.vacuum?.vacuum(CODE_GRAPH_TABLES);

    progress = timed({ phase: 'done' });
    await tenant.withTenant(orgId, ({ code }) =>
      code.updateRepo(repo.id, {
        status: 'indexed',
        progress,
        package: pkg,
        defaultBranch: checkout.branch ?? null,
        lastIndexedCommit: checkout.commit ?? null,
        lastIndexedAt: new Date(),
        lastError: null,
      }),
    );
    return progress;
  }

  /**
   * Reads and hashes a file, and parses it unless its content is what the
   * index holds. A file whose size and modification time are those the last
   * run recorded is not read at all (like git's index); `touch` is the
   * modification time to record for an unchanged file whose recorded one is
   * missing or stale.
   */
  private async prepare(
    f: WalkedFile & { language: CodeLanguage },
    id: string,
    before: StoredFile | undefined,
    rewriteAll: boolean,
    pkg: PackageIdentity,
    decoder: { decode(bytes: Uint8Array): string },
    importTarget: (specifier: string) => string | undefined,
    read: (f: WalkedFile) => Promise<Uint8Array | undefined>,
  ): Promise<IndexedFile | { unchanged: true; touch: number | null | undefined } | 'binary'> {
    if (!rewriteAll && before !== undefined && before.mtimeMs === f.mtimeMs && before.size === f.size) {
      return { unchanged: true, touch: undefined };
    }
    const readAt = Date.now();
    const bytes = await read(f);
    // Changed since the walk into a link, a special file or a file over the cap: counted as failed.
    if (bytes === undefined) throw new Error(`${f.path} is no longer a regular file within the size cap`);
    const contentHash = sha256(bytes);
    // A file written within the clock's reach of this read could change again without its mtime moving.
    const mtimeMs = readAt - f.mtimeMs > RACY_MS ? f.mtimeMs : null;
    if (!rewriteAll && before?.contentHash === contentHash) {
      return { unchanged: true, touch: before.mtimeMs === mtimeMs ? undefined : mtimeMs };
    }
    if (bytes.subarray(0, 8_000).includes(0)) return 'binary';
    const source = decoder.decode(bytes);
    const pool = this.deps.parserPool;
    const parsed =
      pool === undefined ? this.deps.parser.parse(f.language, source) : await pool.parse(f.language, source);
    return buildIndexedFile(
      {
        id,
        path: f.path,
        language: f.language,
        contentHash,
        size: bytes.length,
        mtimeMs,
        replaces: before !== undefined,
      },
      parsed,
      pkg,
      importTarget,
    );
  }
}

const OCCURRENCE_EDGES: Readonly<Record<PreciseOccurrence['kind'], EdgeKind>> = {
  call: 'CALLS',
  reference: 'REFERENCES',
  extends: 'EXTENDS',
  implements: 'IMPLEMENTS',
};

const contains = (s: Span, line: number, col: number): boolean =>
  (s.startLine < line || (s.startLine === line && s.startColumn <= col)) &&
  (s.endLine > line || (s.endLine === line && s.endColumn > col));

/** What the precise pass changes: targets of existing reference edges, and references the parser missed. */
export interface PreciseResult {
  readonly updates: EdgeTargetUpdate[];
  readonly inserts: Array<{ fileId: string; edge: EdgeRow }>;
}

/**
 * The precise pass: asks the compiler where each JS/TS reference of the
 * repository points, and maps its answer to a symbol by file and name
 * position. A reference the compiler places on one of our symbols gets that
 * target with confidence 1; one it places on something we do not index (a
 * local, a parameter, a library declaration) loses a heuristic target in this
 * repository; references it cannot answer, and links into other
 * repositories, keep what the heuristics found. Identifiers the parser did
 * not report as references (a constant read, an enum or a namespace used as
 * a value) but the compiler resolves to one of our symbols become new edges,
 * also at 1.0, from the innermost symbol around them.
 */
export async function precisePass(
  repoId: string,
  files: ReadonlyMap<string, string>,
  sites: readonly ReferenceSite[],
  anchors: readonly SymbolAnchor[],
  session: PreciseSession,
): Promise<PreciseResult> {
  const at = new Map<string, string>();
  const onLine = new Map<string, string>();
  const byFile = new Map<string, SymbolAnchor[]>();
  for (const a of anchors) {
    at.set(`${a.path}:${a.line}:${a.column}`, a.id);
    onLine.set(`${a.path}:${a.line}:${a.name}`, a.id);
    byFile.set(a.path, [...(byFile.get(a.path) ?? []), a]);
  }
  const symbolOf = (defs: readonly PreciseDefinition[]): string | undefined => {
    for (const d of defs) {
      if (d.path === undefined) continue;
      const hit = at.get(`${d.path}:${d.line}:${d.column}`) ?? onLine.get(`${d.path}:${d.line}:${d.name}`);
      if (hit !== undefined) return hit;
    }
    return undefined;
  };
  const siteKeys = new Set(sites.map((x) => `${x.path}:${x.span.startLine}:${x.span.startColumn}`));
  const occurrences = new Map<string, PreciseOccurrence>();
  const inserts: PreciseResult['inserts'] = [];
  for (const [path, fileId] of files) {
    await yieldToLoop();
    for (const o of session.occurrencesIn(path)) {
      const key = `${path}:${o.line}:${o.column}`;
      occurrences.set(key, o);
      if (siteKeys.has(key)) continue;
      const dst = symbolOf(o.definitions);
      if (dst === undefined) continue;
      let enclosing: SymbolAnchor | undefined;
      for (const a of byFile.get(path) ?? []) {
        if (!contains(a.span, o.line, o.column)) continue;
        if (enclosing === undefined || contains(enclosing.span, a.span.startLine, a.span.startColumn)) enclosing = a;
      }
      inserts.push({
        fileId,
        edge: {
          kind: OCCURRENCE_EDGES[o.kind],
          src: enclosing === undefined ? { kind: 'file', id: fileId } : { kind: 'symbol', id: enclosing.id },
          dst: { kind: 'symbol', id: dst },
          dstName: o.name,
          dstModule: undefined,
          hintFileId: undefined,
          confidence: CONFIDENCE.exact,
          span: { startLine: o.line, startColumn: o.column, endLine: o.endLine, endColumn: o.endColumn },
        },
      });
    }
  }
  const updates: EdgeTargetUpdate[] = [];
  let n = 0;
  for (const site of sites) {
    if (++n % PRECISE_YIELD_EVERY === 0) await yieldToLoop();
    const known = occurrences.get(`${site.path}:${site.span.startLine}:${site.span.startColumn}`);
    const defs = known?.definitions ?? session.definitionsAt(site.path, site.span.startLine, site.span.startColumn);
    if (defs === undefined || defs.length === 0) continue;
    const hit = symbolOf(defs);
    if (hit !== undefined) {
      if (site.dstId !== hit || site.confidence < CONFIDENCE.exact) {
        updates.push({ edgeId: site.edgeId, dstId: hit, confidence: CONFIDENCE.exact });
      }
    } else if (site.dstId !== null && (site.dstRepoId === repoId || site.dstRepoId === null)) {
      updates.push({ edgeId: site.edgeId, dstId: null, confidence: CONFIDENCE.unresolved });
    }
  }
  return { updates, inserts };
}
