import type { CodeLanguage, Span, SymbolKind } from '../../ports/code-parser.ts';

/** Where a repository is in its life: queued → indexing → indexed, or failed (the next run retries). */
export const REPO_STATUSES = ['queued', 'indexing', 'indexed', 'failed'] as const;
export type RepoStatus = (typeof REPO_STATUSES)[number];

export const REPO_SOURCE_KINDS = ['path', 'url'] as const;
export type RepoSourceKind = (typeof REPO_SOURCE_KINDS)[number];

/** What a run is doing now; `done` once it finished. */
export const INDEX_PHASES = ['queued', 'checkout', 'walking', 'parsing', 'resolving', 'precise', 'done'] as const;
export type IndexPhase = (typeof INDEX_PHASES)[number];

/**
 * A run's progress, stored on the repo and updated as it goes. `parsed` counts
 * files (re-)parsed because they are new or their content changed, `unchanged`
 * files skipped because their hash matched, `removed` files gone since the last
 * run; `failed` files could not be read or parsed (they are retried next run).
 */
export interface IndexProgress {
  readonly phase: IndexPhase;
  readonly filesTotal: number;
  readonly filesDone: number;
  readonly parsed: number;
  readonly unchanged: number;
  readonly removed: number;
  readonly failed: number;
  /** Files the walk left out: ignored by .gitignore are not counted; too large, binary and over the file cap are. */
  readonly skippedTooLarge: number;
  readonly skippedBinary: number;
  /** Symbolic links and special files (FIFOs, devices) the walk left out: never followed nor opened. */
  readonly skippedLinks: number;
  /** True when the walk stopped at CODE_MAX_FILES. */
  readonly truncated: boolean;
  /** Wall-clock milliseconds spent in each phase of this run so far (parsing includes writing the rows). */
  readonly phaseMs: Readonly<Partial<Record<IndexPhase, number>>>;
}

export const EMPTY_PROGRESS: IndexProgress = {
  phase: 'queued',
  filesTotal: 0,
  filesDone: 0,
  parsed: 0,
  unchanged: 0,
  removed: 0,
  failed: 0,
  skippedTooLarge: 0,
  skippedBinary: 0,
  skippedLinks: 0,
  truncated: false,
  phaseMs: {},
};

/** A package's identity in SCIP terms: `npm my-lib 1.2.0`, `gomod github.com/x/y .`, … */
export interface PackageIdentity {
  readonly manager: string;
  readonly name: string;
  readonly version: string;
}

export const DEPENDENCY_KINDS = ['runtime', 'dev', 'peer', 'optional'] as const;
export type DependencyKind = (typeof DEPENDENCY_KINDS)[number];

/** A package a manifest declares it depends on; `version` is the range as written. */
export interface PackageDependency extends PackageIdentity {
  readonly kind: DependencyKind;
  /** The manifest's directory in the repository ('' for the root). */
  readonly dir: string;
}

/** A package a repository provides: its root package or an npm workspace. */
export interface ProvidedPackage extends PackageIdentity {
  readonly dir: string;
  /** Repository paths the entry point may be (exports, types, module, main, then index files), best first. */
  readonly entryCandidates: readonly string[];
}

/** What a repository's manifests declare. */
export interface RepoManifest {
  /** The root package's SCIP identity (undefined without a manifest). */
  readonly identity: PackageIdentity | undefined;
  readonly provides: readonly ProvidedPackage[];
  readonly dependencies: readonly PackageDependency[];
}

/** A DEPENDS_ON edge: a repository declares a dependency on a package another repository of the org provides. */
export interface RepoDependency {
  readonly kind: 'DEPENDS_ON';
  readonly fromRepoId: string;
  readonly fromRepoName: string;
  readonly toRepoId: string;
  readonly toRepoName: string;
  readonly manager: string;
  readonly package: string;
  /** The declared version range. */
  readonly version: string;
  readonly dependencyKind: DependencyKind;
}

export interface Repo {
  readonly id: string;
  readonly name: string;
  readonly sourceKind: RepoSourceKind;
  /** The local path (resolved) or the git URL it was registered with. */
  readonly location: string;
  readonly defaultBranch: string | null;
  readonly package: PackageIdentity | null;
  readonly status: RepoStatus;
  readonly progress: IndexProgress;
  /** The job that owns the next or current run. */
  readonly indexJobId: string | null;
  readonly lastIndexedCommit: string | null;
  readonly lastIndexedAt: Date | null;
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface RepoCounts {
  readonly files: number;
  readonly symbols: number;
  readonly edges: number;
  /** Edges whose target is not (yet) known: external modules, names not found. */
  readonly unresolvedEdges: number;
}

export const EDGE_KINDS = [
  'DEFINES',
  'IMPORTS',
  'CALLS',
  'REFERENCES',
  'EXTENDS',
  'IMPLEMENTS',
  'CONTAINS',
  'DEPENDS_ON',
] as const;
export type EdgeKind = (typeof EDGE_KINDS)[number];

/** Resolution confidences, from certain to a guess. */
export const CONFIDENCE = {
  /** Structural facts (DEFINES, CONTAINS), resolved imports and references the TypeScript compiler confirmed. */
  exact: 1,
  /** A name imported from a file the import resolved to. */
  imported: 0.95,
  /** A name defined in the same file. */
  sameFile: 0.9,
  /** A name imported from another repository's package, found in its entry file (or one it re-exports). */
  crossRepoEntry: 0.9,
  /** A name imported from another repository's package: the only exported symbol of that name there. */
  crossRepoName: 0.6,
  /** The only symbol of that name in the repository. */
  uniqueName: 0.5,
  unresolved: 0,
} as const;

/** A symbol as answered by queries. */
export interface CodeSymbol {
  readonly id: string;
  readonly repoId: string;
  readonly repoName: string;
  readonly path: string;
  readonly scipSymbol: string;
  readonly kind: SymbolKind;
  readonly name: string;
  readonly qualifiedName: string;
  readonly language: CodeLanguage;
  readonly span: Span;
  readonly signature: string;
  readonly doc: string | null;
  readonly exported: boolean;
}

/** One place that references a symbol. */
export interface CodeReference {
  readonly kind: EdgeKind;
  readonly confidence: number;
  readonly repoId: string;
  readonly path: string;
  /** Where the reference is written; null for file-level edges. */
  readonly span: Span | null;
  /** The symbol the reference is written in; null at a file's top level. */
  readonly enclosing: { readonly id: string; readonly name: string; readonly qualifiedName: string } | null;
  readonly target: {
    readonly id: string;
    readonly name: string;
    readonly qualifiedName: string;
    readonly path: string;
  };
}

export interface SymbolQuery {
  readonly q: string;
  readonly repoId?: string | undefined;
  readonly kind?: SymbolKind | undefined;
  readonly limit: number;
}

/** Which symbols a `symbol=` parameter means: a SCIP id, a qualified name or a plain name. */
export type SymbolMatch =
  | { readonly by: 'scip'; readonly value: string }
  | { readonly by: 'qualified'; readonly value: string }
  | { readonly by: 'name'; readonly value: string };

/** Payload of an `index_repo` job. */
export const INDEX_REPO = 'index_repo';
export interface IndexRepoPayload {
  readonly repoId: string;
}
