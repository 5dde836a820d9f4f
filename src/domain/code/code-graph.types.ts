import type { Span, SymbolKind } from '../../ports/code-parser.ts';
import type { CodeSymbol, EdgeKind } from './code.types.ts';

/**
 * The three graphs a traversal walks: symbols (calls, references,
 * inheritance, containment; top-level code as its file), files (any edge
 * between two files' contents, imports included) and packages (one node per
 * repository; edges that cross repositories, DEPENDS_ON included).
 */
export const GRAPH_LEVELS = ['symbol', 'file', 'package'] as const;
export type GraphLevel = (typeof GRAPH_LEVELS)[number];

/** Which way a traversal goes: what the start uses, or what uses the start. */
export type GraphDirection = 'dependencies' | 'dependents';

export type GraphNodeKind = 'symbol' | 'file' | 'package';

/** A node as answered: a symbol, a file or a package (repository). */
export interface GraphNode {
  readonly kind: GraphNodeKind;
  readonly id: string;
  /** Symbol name, file path or repository name. */
  readonly name: string;
  /** Qualified name for a symbol, the path for a file, the package (`npm my-lib 1.2.0`) or name for a repository. */
  readonly qualifiedName: string;
  readonly symbolKind: SymbolKind | null;
  readonly repoId: string;
  readonly repoName: string;
  /** The file a symbol is in, or the file itself; null for a package. */
  readonly path: string | null;
  readonly span: Span | null;
}

/** A symbol as a graph node. */
export const symbolNode = (s: CodeSymbol): GraphNode => ({
  kind: 'symbol',
  id: s.id,
  name: s.name,
  qualifiedName: s.qualifiedName,
  symbolKind: s.kind,
  repoId: s.repoId,
  repoName: s.repoName,
  path: s.path,
  span: s.span,
});

/** One edge of a breadth-first step, oriented in the traversal's direction. */
export interface GraphStep {
  readonly from: string;
  readonly to: string;
  readonly toKind: GraphNodeKind;
  /** The edge's own kind (for dependents, the edge goes from `to` to `from`). */
  readonly kind: EdgeKind;
  readonly confidence: number;
}

export interface GraphStepQuery {
  readonly level: GraphLevel;
  readonly direction: GraphDirection;
  /** The frontier: symbol, file or repository ids (a symbol traversal may hold files too). */
  readonly nodeIds: readonly string[];
  /** Edges below this confidence are not followed. */
  readonly minConfidence: number;
}

/** One step on a hit's path: the node reached, the edge kind and its confidence (null for the start). */
export interface PathStep {
  readonly node: GraphNode;
  readonly via: EdgeKind | null;
  readonly confidence: number;
}

export interface GraphHit {
  readonly node: GraphNode;
  readonly depth: number;
  /** The weakest edge on `path`: a path is only as sure as its least sure link. */
  readonly confidence: number;
  /** One shortest path from a start node to this one, start first. */
  readonly path: readonly PathStep[];
}

export interface GraphTraversal {
  readonly level: GraphLevel;
  readonly direction: GraphDirection;
  readonly start: readonly GraphNode[];
  readonly depth: number;
  readonly minConfidence: number;
  /** Hits by depth (1 … depth), nearest first; empty depths left out. */
  readonly byDepth: ReadonlyArray<{ readonly depth: number; readonly items: readonly GraphHit[] }>;
  readonly total: number;
  /** The hit cap stopped the walk. */
  readonly truncated: boolean;
}

/** What a traversal starts from: exactly one of a symbol, a file path or a package. */
export type GraphTarget =
  | { readonly symbol: string; readonly file?: undefined; readonly package?: undefined }
  | { readonly file: string; readonly symbol?: undefined; readonly package?: undefined }
  | { readonly package: string; readonly symbol?: undefined; readonly file?: undefined };

export interface TraversalOptions {
  readonly repoId?: string | undefined;
  readonly depth: number;
  readonly minConfidence: number;
  readonly limit: number;
}

/** Lines a diff touches in one file (1-based, old side: what the index holds). */
export interface ChangedFile {
  readonly path: string;
  readonly lines: readonly number[];
  /** The file is new in the diff: nothing indexed can depend on it yet. */
  readonly added: boolean;
}

export interface DiffImpact {
  readonly changed: ReadonlyArray<{
    readonly path: string;
    readonly lines: number;
    readonly indexed: boolean;
    /** The innermost symbols whose span holds a changed line. */
    readonly symbols: readonly GraphNode[];
    /** A changed line lies outside every symbol (imports, top-level code). */
    readonly topLevel: boolean;
  }>;
  readonly impact: GraphTraversal;
}

export interface CodeSnippet {
  readonly symbol: CodeSymbol;
  /** 1-based, inclusive. */
  readonly startLine: number;
  readonly endLine: number;
  readonly code: string;
  /** Cut at the size cap. */
  readonly truncated: boolean;
}

/** A symbol graph of one repository, for ranking. */
export interface ReferenceGraph {
  readonly symbols: readonly CodeSymbol[];
  /** Symbol (or top-level file) → symbol references, one row per pair, strongest confidence. */
  readonly edges: ReadonlyArray<{ readonly src: string; readonly dst: string; readonly weight: number }>;
}

export interface RankedSymbol {
  readonly symbol: CodeSymbol;
  readonly rank: number;
}

export interface RepoMap {
  readonly repoId: string;
  readonly repoName: string;
  readonly tokens: number;
  /** Symbols in the map, most central first. */
  readonly symbols: readonly RankedSymbol[];
  /** File headers and indented signatures, like aider's repo map. */
  readonly text: string;
  /** Symbols ranked in all. */
  readonly totalSymbols: number;
}
