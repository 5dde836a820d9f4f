import type { CodeLanguage, Span, SymbolKind } from './code-parser.ts';
import type {
  CodeReference,
  CodeSymbol,
  DependencyKind,
  EdgeKind,
  IndexProgress,
  PackageIdentity,
  Repo,
  RepoCounts,
  RepoDependency,
  RepoSourceKind,
  RepoStatus,
  SymbolMatch,
  SymbolQuery,
} from '../domain/code/code.types.ts';
import type {
  GraphLevel,
  GraphNode,
  GraphStep,
  GraphStepQuery,
  ReferenceGraph,
} from '../domain/code/code-graph.types.ts';

export interface NewRepoRow {
  readonly id: string;
  readonly name: string;
  readonly sourceKind: RepoSourceKind;
  readonly location: string;
  readonly indexJobId: string;
}

/** Fields a run or a re-index request changes; omitted fields stay. */
export interface RepoPatch {
  readonly status?: RepoStatus;
  readonly progress?: IndexProgress;
  readonly indexJobId?: string | null;
  readonly defaultBranch?: string | null;
  readonly package?: PackageIdentity | null;
  readonly lastIndexedCommit?: string | null;
  readonly lastIndexedAt?: Date;
  readonly lastError?: string | null;
}

/** A file as last indexed: enough to tell whether it changed. */
export interface StoredFile {
  readonly id: string;
  readonly path: string;
  readonly contentHash: string;
  readonly size: number;
  /** The modification time the last run saw; null when it was not trusted (see migration 0013). */
  readonly mtimeMs: number | null;
}

export interface SymbolRow {
  readonly id: string;
  readonly parentId: string | null;
  readonly scipSymbol: string;
  readonly descriptor: string;
  readonly kind: SymbolKind;
  readonly name: string;
  readonly qualifiedName: string;
  readonly span: Span;
  readonly nameSpan: Span;
  readonly signature: string;
  readonly doc: string | null;
  readonly exported: boolean;
}

export interface EdgeRow {
  readonly kind: EdgeKind;
  readonly src: { readonly kind: 'file' | 'symbol'; readonly id: string };
  /** Undefined while unresolved; resolution fills it in later. */
  readonly dst: { readonly kind: 'file' | 'symbol'; readonly id: string } | undefined;
  /** The target as written: a name, or an import's module specifier. */
  readonly dstName: string;
  /** For names brought in by an import: its module specifier. */
  readonly dstModule: string | undefined;
  /** The file that import resolved to, where the name is looked up. */
  readonly hintFileId: string | undefined;
  readonly confidence: number;
  readonly span: Span | undefined;
}

/** One file's complete index: written as a whole, replacing what the file had. */
export interface IndexedFile {
  /** The existing id for a file indexed before (its incoming edges are re-resolved); a fresh one otherwise. */
  readonly id: string;
  readonly path: string;
  readonly language: CodeLanguage;
  readonly contentHash: string;
  readonly size: number;
  /** Kept so the next run can skip reading the file; null when too recent to trust. */
  readonly mtimeMs: number | null;
  /** True when the file was indexed before: its old rows go, and edges into it are resolved again. */
  readonly replaces: boolean;
  readonly symbols: readonly SymbolRow[];
  readonly edges: readonly EdgeRow[];
}

export interface UnresolvedImport {
  readonly fileId: string;
  readonly fromPath: string;
  readonly language: CodeLanguage;
  readonly specifier: string;
}

/** A row of `code_packages`: a package a repository provides or depends on. */
export interface PackageRow {
  readonly role: 'provides' | 'depends';
  readonly manager: string;
  readonly name: string;
  readonly version: string;
  readonly dependencyKind: DependencyKind | null;
  readonly dir: string;
  /** `provides`: the repository file the entry point maps to. */
  readonly entryPath: string | null;
}

/** A reference edge with its position, for the precise pass. */
export interface ReferenceSite {
  readonly edgeId: string;
  readonly path: string;
  readonly span: Span;
  readonly dstId: string | null;
  /** The repository the current target lives in (null while unresolved). */
  readonly dstRepoId: string | null;
  readonly confidence: number;
}

/** Where a symbol's name is written: how the precise pass maps a compiler answer to a symbol. */
export interface SymbolAnchor {
  readonly id: string;
  readonly fileId: string;
  /** The whole definition: what encloses a reference. */
  readonly span: Span;
  readonly path: string;
  readonly name: string;
  readonly line: number;
  readonly column: number;
}

export interface EdgeTargetUpdate {
  readonly edgeId: string;
  /** null: unresolved. */
  readonly dstId: string | null;
  readonly confidence: number;
}

export interface ImportTarget {
  readonly fileId: string;
  readonly specifier: string;
  readonly targetFileId: string;
}

/**
 * The code graph of one org (handed out by `withTenant`): repositories,
 * files, symbols and edges. Writes are per file — a file's symbols and the
 * edges originating in it are replaced together — and edges *into* replaced
 * or deleted symbols and files fall back to unresolved (name kept), to be
 * resolved again by `resolveImports` / `resolveReferences`.
 */
export interface CodeStore {
  insertRepo(row: NewRepoRow): Promise<Repo>;
  findRepo(id: string): Promise<Repo | undefined>;
  /** Locks the repo row for the rest of the transaction (re-index requests queue behind each other). */
  lockRepo(id: string): Promise<Repo | undefined>;
  /**
   * How many repositories the org has, after taking the org's registration
   * lock for the rest of the transaction: registrations of one org queue
   * behind each other, so a count-then-insert cannot pass a quota.
   */
  lockRepoCount(): Promise<number>;
  findRepos(): Promise<Repo[]>;
  /** Indexed source bytes (the sum of file sizes) of the org's repositories other than `repoId`. */
  sumOtherReposBytes(repoId: string): Promise<number>;
  updateRepo(id: string, patch: RepoPatch): Promise<Repo | undefined>;
  deleteRepo(id: string): Promise<boolean>;
  countRepo(id: string): Promise<RepoCounts>;

  findFiles(repoId: string): Promise<StoredFile[]>;
  /** Replaces each file's symbols and outgoing edges (inserting the file when new). */
  writeFiles(repoId: string, files: readonly IndexedFile[]): Promise<void>;
  deleteFiles(repoId: string, fileIds: readonly string[]): Promise<void>;
  /** Records the modification time of files whose content did not change (the stat cache). */
  touchFiles(
    repoId: string,
    files: ReadonlyArray<{ readonly id: string; readonly mtimeMs: number | null }>,
  ): Promise<void>;
  /** IMPORTS edges without a target. */
  findUnresolvedImports(repoId: string): Promise<UnresolvedImport[]>;
  /**
   * Points each file's unresolved imports of `specifier` at `targetFileId`,
   * and makes that file the lookup hint of the names imported from it.
   */
  resolveImports(repoId: string, targets: readonly ImportTarget[]): Promise<void>;
  /**
   * Resolves unresolved references: names imported from a resolved file, in
   * that file (0.95); else, unless the name came from an external module, the
   * only symbol of that name in the repository (0.5). `recheckGuesses` first
   * returns every 0.5 guess to unresolved (after symbols changed, a unique name
   * may no longer be unique). Returns how many edges were resolved.
   */
  resolveReferences(repoId: string, recheckGuesses: boolean): Promise<number>;

  /** Replaces the packages the repository provides and depends on. */
  replacePackages(repoId: string, rows: readonly PackageRow[]): Promise<void>;
  /**
   * DEPENDS_ON edges of the org: a repository declaring a dependency on a
   * package another repository provides (same manager and name). With a
   * repoId, only those from or to it.
   */
  findRepoDependencies(repoId?: string): Promise<RepoDependency[]>;
  /**
   * Resolves names imported from a package another repository of the org
   * provides, for edges from `repoId` and edges into it: in the package's
   * entry file or a file it imports (0.9), else the only exported top-level
   * symbol of that name in that repository (0.6). Cross-repository targets
   * below 1 are rechecked first. Returns how many edges were resolved.
   */
  resolveCrossRepoReferences(repoId: string): Promise<number>;
  /** Reference edges (CALLS, REFERENCES, EXTENDS, IMPLEMENTS) written in these languages, with positions. */
  findReferenceSites(repoId: string, languages: readonly CodeLanguage[]): Promise<ReferenceSite[]>;
  findSymbolAnchors(repoId: string): Promise<SymbolAnchor[]>;
  updateEdgeTargets(repoId: string, updates: readonly EdgeTargetUpdate[]): Promise<void>;
  /** Adds edges to files of the repository (the precise pass's references the parser missed). */
  insertEdges(repoId: string, edges: ReadonlyArray<{ readonly fileId: string; readonly edge: EdgeRow }>): Promise<void>;

  /** Case-insensitive: exact name first, then prefix, then contains. */
  findSymbols(q: SymbolQuery): Promise<CodeSymbol[]>;
  findDefinitions(match: SymbolMatch, repoId: string | undefined, limit: number): Promise<CodeSymbol[]>;
  /** Resolved edges into these symbols, strongest first. */
  findReferences(symbolIds: readonly string[], limit: number): Promise<CodeReference[]>;

  /** Files at exactly this repository path, in one repository or all of them, as graph nodes. */
  findFilesByPath(path: string, repoId: string | undefined): Promise<GraphNode[]>;
  /**
   * One breadth-first step of a traversal: the resolved edges leaving the
   * frontier in the query's direction at its level, one row per (from, to,
   * kind) with the strongest confidence, none below `minConfidence`.
   */
  findGraphSteps(q: GraphStepQuery): Promise<GraphStep[]>;
  /** Nodes by id, described for answers: symbols and files at the symbol and file levels, repositories at the package level. */
  findGraphNodes(level: GraphLevel, ids: readonly string[]): Promise<GraphNode[]>;
  /** Every symbol of these files, for mapping changed lines to symbols. */
  findFileSymbols(fileIds: readonly string[]): Promise<CodeSymbol[]>;
  /** One repository's symbols and its resolved symbol references (in-repo), for ranking. */
  findReferenceGraph(repoId: string): Promise<ReferenceGraph>;
}
