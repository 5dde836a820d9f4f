import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import type { PreciseDefinition, PreciseOccurrence, PreciseSession } from '../ports/code-analysis.ts';
import { insideRoot } from './js-resolver.ts';

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
export function openTsPrecise(root: string, files: readonly string[]): PreciseSession | undefined {
  const real = realpathSync(root);
  const configPath = CONFIG_FILES.map((n) => path.join(real, n)).find((p) => existsSync(p));
  if (configPath === undefined) return undefined;
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  const parsed = ts.parseJsonConfigFileContent(read.config ?? {}, ts.sys, real, undefined, configPath);
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
        const text = ts.sys.readFile(f);
        snapshots.set(f, text === undefined ? undefined : ts.ScriptSnapshot.fromString(text));
      }
      return snapshots.get(f);
    },
    getCurrentDirectory: () => real,
    getCompilationSettings: () => options,
    getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
    fileExists: (p) => ts.sys.fileExists(p),
    readFile: (p, enc) => ts.sys.readFile(p, enc),
    readDirectory: (...args) => ts.sys.readDirectory(...args),
    directoryExists: (p) => ts.sys.directoryExists(p),
    getDirectories: (p) => ts.sys.getDirectories(p),
    realpath: (p) => (ts.sys.realpath === undefined ? p : ts.sys.realpath(p)),
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
