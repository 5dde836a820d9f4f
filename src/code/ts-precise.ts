import path from 'node:path';
import ts from 'typescript';
import type { PreciseDefinition, PreciseOccurrence, PreciseSession } from '../ports/code-analysis.ts';
import { insideRoot } from './js-resolver.ts';
import { RepoFiles, within } from './safe-fs.ts';

export interface TsPreciseOptions {
  /** Files larger than this are not read by the compiler (CODE_MAX_FILE_BYTES). */
  readonly maxFileBytes: number;
}

const CONFIG_FILES = ['tsconfig.json', 'jsconfig.json'];

/**
 * Line and column of a position. Columns count UTF-16 code units, as both
 * TypeScript and web-tree-sitter (which parses JavaScript strings) do, so the
 * compiler's positions and the parser's match on lines with non-ASCII text.
 */
function position(sf: ts.SourceFile, pos: number): { line: number; column: number } {
  const lc = sf.getLineAndCharacterOfPosition(pos);
  return { line: lc.line, column: lc.character };
}

/** The name a declaration introduces (`getNameOfDeclaration` also names `a.b` and `a.b = …`: those are uses). */
export function isDeclarationName(n: ts.Identifier): boolean {
  const p = n.parent;
  if (p === undefined || ts.isPropertyAccessExpression(p) || ts.isElementAccessExpression(p)) return false;
  if (ts.isBinaryExpression(p) || ts.isCallExpression(p)) return false;
  return ts.getNameOfDeclaration(p as ts.Declaration) === n;
}

export function inImportOrExport(n: ts.Node): boolean {
  for (let p: ts.Node | undefined = n.parent; p !== undefined; p = p.parent) {
    if (ts.isImportDeclaration(p) || ts.isExportDeclaration(p) || ts.isImportEqualsDeclaration(p)) return true;
    if (ts.isStatement(p)) return false;
  }
  return false;
}

/** How an identifier is used: the callee of a call or `new`, in a heritage clause, or otherwise. */
function usage(n: ts.Identifier): PreciseOccurrence['kind'] {
  let e: ts.Node = n;
  while (ts.isPropertyAccessExpression(e.parent) && e.parent.name === e) e = e.parent;
  const p = e.parent;
  if ((ts.isCallExpression(p) || ts.isNewExpression(p)) && p.expression === e) return 'call';
  if (ts.isExpressionWithTypeArguments(p) && ts.isHeritageClause(p.parent)) {
    return p.parent.token === ts.SyntaxKind.ExtendsKeyword ? 'extends' : 'implements';
  }
  return 'reference';
}

/**
 * The precise pass's compiler session: a TypeScript LanguageService over the
 * repository's indexed JS/TS files, with the root tsconfig.json (or
 * jsconfig.json)'s compiler options (allowJs on, nothing emitted). Each
 * question is a go-to-definition at a reference's position; aliases (imports,
 * re-exports) are followed to the declaration. Declarations outside the
 * repository (node_modules, the standard library) come back without a path.
 */
export function openTsPrecise(
  root: string,
  files: readonly string[],
  opts: TsPreciseOptions,
): PreciseSession | undefined {
  const repo = RepoFiles.openSync(root);
  const real = repo.realRoot;
  const libDir = path.dirname(ts.getDefaultLibFilePath({}));
  // The compiler's host is synchronous: it reads through RepoFiles.readSync (regular files inside the
  // repository, at most maxFileBytes each, so the wait is bounded), and the standard library's own files.
  const texts = new Map<string, string | undefined>();
  const readText = (p: string): string | undefined => {
    const abs = path.resolve(real, p);
    if (within(abs, libDir)) return ts.sys.readFile(abs);
    if (!texts.has(abs)) {
      const r = repo.readSync(abs, opts.maxFileBytes);
      texts.set(abs, 'bytes' in r ? r.bytes.toString('utf8') : undefined);
    }
    return texts.get(abs);
  };
  const fileExists = (p: string): boolean => readText(p) !== undefined;
  const inside = (p: string): boolean => within(path.resolve(real, p), real) || within(path.resolve(real, p), libDir);
  const configPath = CONFIG_FILES.map((n) => path.join(real, n)).find((p) => fileExists(p));
  if (configPath === undefined) return undefined;
  const read = ts.readConfigFile(configPath, readText);
  const parseHost: ts.ParseConfigHost = {
    useCaseSensitiveFileNames: ts.sys.useCaseSensitiveFileNames,
    // Only the options are used (the files are the walk's): no directory is listed.
    readDirectory: () => [],
    fileExists,
    readFile: readText,
  };
  const parsed = ts.parseJsonConfigFileContent(read.config ?? {}, parseHost, real, undefined, configPath);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    allowJs: true,
    checkJs: false,
    noEmit: true,
    skipLibCheck: true,
    incremental: false,
    composite: false,
  };
  const rootNames = files.map((f) => path.join(real, f));
  const snapshots = new Map<string, ts.IScriptSnapshot | undefined>();
  const host: ts.LanguageServiceHost = {
    getScriptFileNames: () => rootNames,
    getScriptVersion: () => '1',
    getScriptSnapshot: (f) => {
      if (!snapshots.has(f)) {
        const text = readText(f);
        snapshots.set(f, text === undefined ? undefined : ts.ScriptSnapshot.fromString(text));
      }
      return snapshots.get(f);
    },
    getCurrentDirectory: () => real,
    getCompilationSettings: () => options,
    getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
    fileExists,
    readFile: readText,
    readDirectory: (p, ...rest) => (inside(p) ? ts.sys.readDirectory(p, ...rest) : []),
    directoryExists: (p) => inside(p) && ts.sys.directoryExists(p),
    getDirectories: (p) => (inside(p) ? ts.sys.getDirectories(p) : []),
    // Workspace packages linked into node_modules map to their sources; a link out of the tree is not followed.
    realpath: (p) => {
      const r = ts.sys.realpath?.(p) ?? p;
      return inside(r) ? r : p;
    },
  };
  const service = ts.createLanguageService(host, ts.createDocumentRegistry());
  const program = service.getProgram();
  const checker = program?.getTypeChecker();
  return {
    definitionsAt(file, line, column): readonly PreciseDefinition[] | undefined {
      const abs = path.join(real, file);
      const sf = program?.getSourceFile(abs);
      const start = sf?.getLineStarts()[line];
      if (sf === undefined || start === undefined) return undefined;
      const pos = start + column;
      let defs: readonly ts.DefinitionInfo[] | undefined;
      try {
        defs = service.getDefinitionAtPosition(abs, pos);
      } catch {
        return undefined;
      }
      if (defs === undefined) return undefined;
      // `new C()` also answers C's constructor: the class comes first.
      const ordered = [...defs].sort(
        (a, b) =>
          Number(a.kind === ts.ScriptElementKind.constructorImplementationElement) -
          Number(b.kind === ts.ScriptElementKind.constructorImplementationElement),
      );
      return ordered.map((d) => {
        const dsf = program?.getSourceFile(d.fileName);
        const lc = dsf?.getLineAndCharacterOfPosition(d.textSpan.start) ?? { line: 0, character: 0 };
        return {
          path: insideRoot(real, d.fileName),
          line: lc.line,
          column: lc.character,
          name: d.name,
        };
      });
    },
    occurrencesIn(file): readonly PreciseOccurrence[] {
      const sf = program?.getSourceFile(path.join(real, file));
      if (sf === undefined || checker === undefined) return [];
      const out: PreciseOccurrence[] = [];
      const visit = (n: ts.Node): void => {
        if (ts.isIdentifier(n) && !isDeclarationName(n) && !inImportOrExport(n)) {
          let sym: ts.Symbol | undefined;
          try {
            sym = checker.getSymbolAtLocation(n);
            if (sym !== undefined && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
          } catch {
            sym = undefined;
          }
          const definitions: PreciseDefinition[] = [];
          for (const d of sym?.declarations ?? []) {
            const name = ts.getNameOfDeclaration(d);
            const dsf = d.getSourceFile();
            const where = insideRoot(real, dsf.fileName);
            if (name !== undefined && where !== undefined)
              definitions.push({ path: where, ...position(dsf, name.getStart(dsf)), name: name.getText(dsf) });
          }
          if (definitions.length > 0) {
            const start = position(sf, n.getStart(sf));
            const end = position(sf, n.getEnd());
            out.push({
              line: start.line,
              column: start.column,
              endLine: end.line,
              endColumn: end.column,
              name: n.text,
              kind: usage(n),
              definitions,
            });
          }
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
      return out;
    },
    close() {
      service.dispose();
      snapshots.clear();
    },
  };
}
