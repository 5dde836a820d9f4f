/**
 * What the code indexer needs from a parser: for one file's text, the symbols
 * it defines, the names it references and the modules it imports. The
 * tree-sitter adapter (src/code/) implements it; the domain never sees a
 * syntax tree.
 */

export const CODE_LANGUAGES = ['javascript', 'typescript', 'tsx', 'python', 'go', 'java', 'rust'] as const;
export type CodeLanguage = (typeof CODE_LANGUAGES)[number];

export const SYMBOL_KINDS = [
  'function',
  'method',
  'class',
  'interface',
  'type',
  'enum',
  'variable',
  'constant',
  'module',
  'field',
  'macro',
] as const;
export type SymbolKind = (typeof SYMBOL_KINDS)[number];

/** Zero-based line/column, end exclusive (tree-sitter's points). */
export interface Span {
  readonly startLine: number;
  readonly startColumn: number;
  readonly endLine: number;
  readonly endColumn: number;
}

export interface ParsedSymbol {
  readonly kind: SymbolKind;
  readonly name: string;
  /** Dotted path of enclosing definitions within the file, e.g. `Parser.parse`. */
  readonly qualifiedName: string;
  /** The whole definition. */
  readonly span: Span;
  /** Just the name. */
  readonly nameSpan: Span;
  /** The declaration's header (up to the body), one line, ≤ 200 chars. */
  readonly signature: string;
  /** The doc comment or docstring, markers stripped; undefined when none. */
  readonly doc: string | undefined;
  /** Index of the enclosing symbol in the same list; undefined at top level. */
  readonly parent: number | undefined;
  /** Exported / public from the module (language's own rules). */
  readonly exported: boolean;
}

export type ReferenceKind = 'call' | 'reference' | 'extends' | 'implements' | 'type';

export interface ParsedReference {
  readonly kind: ReferenceKind;
  /** The referenced identifier as written (last segment for `a.b.c()`: `c`). */
  readonly name: string;
  /** The receiver / qualifier as written (`a.b` for `a.b.c()`), if any. */
  readonly qualifier: string | undefined;
  readonly span: Span;
  /** Index of the innermost enclosing symbol (the caller); undefined at top level. */
  readonly enclosing: number | undefined;
}

export interface ParsedImport {
  /** The module specifier as written: `./util`, `react`, `os.path`, `github.com/x/y`, `crate::a::b`. */
  readonly module: string;
  /** Imported names: `{ name, alias }`; `*` for a namespace or wildcard import; empty for a bare import. */
  readonly names: ReadonlyArray<{ readonly name: string; readonly alias: string | undefined }>;
  readonly span: Span;
  /** Type-only import (TypeScript `import type`). */
  readonly typeOnly: boolean;
}

export interface ParsedFile {
  readonly language: CodeLanguage;
  readonly symbols: readonly ParsedSymbol[];
  readonly references: readonly ParsedReference[];
  readonly imports: readonly ParsedImport[];
  /** Syntax errors found (the file is still indexed from what parsed). */
  readonly errorCount: number;
}

export interface CodeParser {
  /** The language for a path by extension; undefined: not indexed. */
  languageOf(path: string): CodeLanguage | undefined;
  parse(language: CodeLanguage, source: string): ParsedFile;
}

/**
 * The same parse on other threads: calls are spread over the pool and
 * answered in any order. Threads start on first use, or on `warm()`.
 */
export interface ParserPool {
  /** Starts the threads (and loads their grammars) without waiting, so that a run's first files do not wait. */
  warm(): void;
  parse(language: CodeLanguage, source: string): Promise<ParsedFile>;
  close(): Promise<void>;
}
