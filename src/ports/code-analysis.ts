/**
 * Language tooling the code indexer uses beyond the parser: a module
 * resolver for JavaScript/TypeScript (tsconfig paths, package exports, index
 * files) and the precise pass, which asks the TypeScript compiler where each
 * reference points. Adapters in src/code/ implement them; paths are posix and
 * relative to the repository root.
 */

export interface ModuleResolver {
  /** The repository file `specifier` names from `fromPath`; undefined when it is outside the repository or not found. */
  resolve(fromPath: string, specifier: string): string | undefined;
}

/** Where the compiler says a name is declared: a repository path (undefined outside the repository) and the name's position. */
export interface PreciseDefinition {
  readonly path: string | undefined;
  readonly line: number;
  readonly column: number;
  readonly name: string;
}

/** An identifier the compiler resolved into the repository. */
export interface PreciseOccurrence {
  readonly line: number;
  /** UTF-8 byte column, as tree-sitter counts. */
  readonly column: number;
  readonly endLine: number;
  readonly endColumn: number;
  readonly name: string;
  /** How it is used: called (`f()`, `new C()`), a heritage clause, or any other reference. */
  readonly kind: 'call' | 'extends' | 'implements' | 'reference';
  readonly definitions: readonly PreciseDefinition[];
}

export interface PreciseSession {
  /**
   * The declarations of the identifier at a zero-based line and column
   * (tree-sitter's: columns count UTF-8 bytes); undefined when the compiler
   * has no answer (an untyped receiver, a file it does not know).
   */
  definitionsAt(path: string, line: number, column: number): readonly PreciseDefinition[] | undefined;
  /**
   * Every identifier of a file that refers to a declaration in the
   * repository (declarations' own names and import/export clauses left out),
   * with the compiler's answer: what the parser's references may have missed.
   */
  occurrencesIn(path: string): readonly PreciseOccurrence[];
  close(): void;
}

export interface CodeAnalysis {
  moduleResolver(root: string): ModuleResolver;
  /**
   * A compiler session over these JavaScript/TypeScript files of a checkout;
   * undefined when the repository has no tsconfig.json or jsconfig.json at its root.
   */
  openPrecise(root: string, files: readonly string[]): PreciseSession | undefined;
}
