import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Language, Parser, Query, type Node, type QueryMatch } from 'web-tree-sitter';
import {
  CODE_LANGUAGES,
  type CodeLanguage,
  type CodeParser,
  type ParsedFile,
  type ParsedImport,
  type ParsedReference,
  type ParsedSymbol,
  type ReferenceKind,
  type SymbolKind,
} from '../ports/code-parser.ts';
import { LANGUAGE_RULES, type LanguageRules } from './languages.ts';
import { isIdentifier, isQualifierSegment, refTarget, spanOf } from './syntax.ts';

/**
 * The code parser on web-tree-sitter: grammars and `queries/tags.scm` come
 * from each grammar's own npm package; imports, exports, owners and the
 * extra definitions come from our patterns in languages.ts.
 *
 * Grammars load up front (a few ms each); a language's query compiles on its
 * first parse (100–200 ms for TypeScript), so a repository without Rust never
 * pays for Rust. One Parser per language is reused; every tree is deleted
 * after its parse, since WASM memory is not garbage collected.
 */

const require = createRequire(import.meta.url);
const packageDir = (pkg: string): string => path.dirname(require.resolve(`${pkg}/package.json`));

const EXTENSIONS: Readonly<Record<string, CodeLanguage>> = {
  '.js': 'javascript',
  '.mjs': 'javascript',
  '.cjs': 'javascript',
  '.jsx': 'javascript',
  '.ts': 'typescript',
  '.mts': 'typescript',
  '.cts': 'typescript',
  '.tsx': 'tsx',
  '.py': 'python',
  '.pyi': 'python',
  '.go': 'go',
  '.java': 'java',
  '.rs': 'rust',
};

export function languageOf(file: string): CodeLanguage | undefined {
  return EXTENSIONS[path.extname(file).toLowerCase()];
}

/** Tag kinds of upstream `@definition.*` captures → our kinds (refined per language afterwards). */
const TAG_KINDS: Readonly<Record<string, SymbolKind>> = {
  function: 'function',
  method: 'method',
  class: 'class',
  interface: 'interface',
  module: 'module',
  macro: 'macro',
  constant: 'constant',
  type: 'type',
};

const TAG_REFS: Readonly<Record<string, ReferenceKind>> = {
  call: 'call',
  class: 'reference',
  type: 'type',
  implementation: 'implements',
};

/** When one node is captured twice, the lower rank wins (a `const f = () => …` is a function, not a variable). */
const SYMBOL_RANK: readonly SymbolKind[] = [
  'method',
  'function',
  'class',
  'interface',
  'enum',
  'type',
  'module',
  'macro',
  'field',
  'constant',
  'variable',
];
const REF_RANK: readonly ReferenceKind[] = ['extends', 'implements', 'call', 'reference', 'type'];
/** Declarations of type parameters are not references. */
const NOT_REFERENCES = new Set(['type_parameter', 'type_parameter_declaration']);

interface Compiled {
  readonly rules: LanguageRules;
  readonly parser: Parser;
  readonly query: Query;
}

interface DefDraft {
  readonly node: Node;
  readonly nameNode: Node;
  kind: SymbolKind;
}

interface RefDraft {
  readonly capture: Node;
  readonly name: Node;
  readonly qualifier: string | undefined;
  readonly kind: ReferenceKind;
  /** Ours (0) beat upstream's (1), which beat fallbacks (2), for the same node. */
  readonly origin: number;
}

interface RefCapture {
  readonly node: Node;
  readonly kind: ReferenceKind;
  readonly origin: number;
}

interface Sym {
  readonly draft: DefDraft;
  readonly name: string;
  readonly outer: Node;
  parent: number | undefined;
  kind: SymbolKind;
  qualifiedName?: string;
  exported?: boolean;
}

let init: Promise<void> | undefined;

/** Loads every grammar; queries compile lazily per language on first use. */
export async function createTreeSitterParser(): Promise<CodeParser> {
  init ??= Parser.init();
  await init;
  const languages = new Map<CodeLanguage, Language>();
  await Promise.all(
    CODE_LANGUAGES.map(async (lang) => {
      const { pkg, wasm } = LANGUAGE_RULES[lang].grammar;
      languages.set(lang, await Language.load(path.join(packageDir(pkg), wasm)));
    }),
  );
  const compiled = new Map<CodeLanguage, Compiled>();
  const compile = (lang: CodeLanguage): Compiled => {
    let c = compiled.get(lang);
    if (c !== undefined) return c;
    const language = languages.get(lang);
    if (language === undefined) throw new Error(`no grammar for ${lang}`);
    const rules = LANGUAGE_RULES[lang];
    const tags = rules.tags.map((pkg) => readFileSync(path.join(packageDir(pkg), 'queries', 'tags.scm'), 'utf8'));
    const parser = new Parser();
    parser.setLanguage(language);
    c = { rules, parser, query: new Query(language, [...tags, rules.extra].join('\n')) };
    compiled.set(lang, c);
    return c;
  };
  return {
    languageOf,
    parse(language, source) {
      const { rules, parser, query } = compile(language);
      const tree = parser.parse(source);
      if (tree === null) throw new Error(`tree-sitter returned no tree for ${language}`);
      try {
        return extract(rules, tree.rootNode, query.matches(tree.rootNode), source);
      } finally {
        tree.delete();
      }
    },
  };
}

function extract(rules: LanguageRules, root: Node, matches: QueryMatch[], source: string): ParsedFile {
  const defs = new Map<string, DefDraft>();
  const refCaptures: RefCapture[] = [];
  const importNodes: { node: Node; capture: string }[] = [];
  const exportedNames = new Set<string>();

  for (const m of matches) {
    let nameNode: Node | undefined;
    let defNode: Node | undefined;
    let defKind: SymbolKind | undefined;
    let refKind: ReferenceKind | undefined;
    let origin = 1;
    for (const c of m.captures) {
      const [head, tail] = splitCapture(c.name);
      if (head === 'name') nameNode = c.node;
      else if (head === 'definition' || head === 'symbol') {
        defNode = c.node;
        defKind = head === 'symbol' ? (tail as SymbolKind) : TAG_KINDS[tail];
      } else if (head === 'reference') refKind = TAG_REFS[tail];
      else if (head === 'ref' || head === 'fallback') {
        refKind = tail as ReferenceKind;
        origin = head === 'ref' ? 0 : 2;
      } else if (head === 'import') importNodes.push({ node: c.node, capture: c.name });
      else if (head === 'exported') exportedNames.add(c.node.text);
    }
    if (nameNode === undefined) continue;
    if (defNode !== undefined && defKind !== undefined) {
      const key = `${defNode.id}:${nameNode.id}`;
      const prev = defs.get(key);
      if (prev === undefined || SYMBOL_RANK.indexOf(defKind) < SYMBOL_RANK.indexOf(prev.kind))
        defs.set(key, { node: defNode, nameNode, kind: defKind });
    } else if (refKind !== undefined) refCaptures.push({ node: nameNode, kind: refKind, origin });
  }

  const symbols = buildSymbols(rules, [...defs.values()], exportedNames, source);
  const references = buildReferences(rules, symbols, refCaptures, source);
  const imports: ParsedImport[] = [];
  const seenImports = new Set<number>();
  for (const { node, capture } of importNodes) {
    if (seenImports.has(node.id)) continue;
    seenImports.add(node.id);
    imports.push(...rules.readImport(node, capture));
  }
  return {
    language: rules.language,
    symbols: symbols.map((s) => toParsedSymbol(rules, s, source)),
    references,
    imports,
    errorCount: root.hasError ? countErrors(root) : 0,
  };
}

function splitCapture(name: string): [string, string] {
  const dot = name.indexOf('.');
  return dot < 0 ? [name, ''] : [name.slice(0, dot), name.slice(dot + 1)];
}

function buildSymbols(
  rules: LanguageRules,
  drafts: DefDraft[],
  exportedNames: ReadonlySet<string>,
  source: string,
): Sym[] {
  // Outer definitions first, so that a parent always precedes its children.
  drafts.sort((a, b) => a.node.startIndex - b.node.startIndex || b.node.endIndex - a.node.endIndex);
  const syms: Sym[] = [];
  const stack: number[] = [];
  for (const d of drafts) {
    while (stack.length > 0 && syms[stack.at(-1)!]!.draft.node.endIndex <= d.node.startIndex) stack.pop();
    const parent = stack.at(-1);
    const up = parent === undefined ? undefined : syms[parent];
    // `exports.run = function run() {}`: one function, captured as the assignment and as the expression.
    if (up !== undefined && up.name === d.nameNode.text && d.node.parent?.id === up.draft.node.id) continue;
    const parentKind = up?.kind;
    syms.push({
      draft: d,
      name: d.nameNode.text,
      outer: rules.outer(d.node),
      parent,
      kind: rules.refineKind(d.node, d.kind, parentKind),
    });
    stack.push(syms.length - 1);
  }

  // Go methods and Rust impl blocks: the owning type, when this file defines it, becomes the parent.
  if (rules.owner !== undefined) {
    const types = topLevelTypes(syms);
    for (const s of syms) {
      if (s.parent !== undefined) continue;
      const owner = rules.owner(s.draft.node, source);
      if (owner === undefined) continue;
      s.parent = types.get(owner);
      if (s.kind === 'function') s.kind = 'method';
      if (s.parent === undefined) s.qualifiedName = `${owner}.${s.name}`;
    }
  }

  const resolve = (i: number): Sym => {
    const s = syms[i]!;
    if (s.exported !== undefined) return s;
    const p = s.parent === undefined ? undefined : resolve(s.parent);
    s.qualifiedName ??= p === undefined ? s.name : `${p.qualifiedName}.${s.name}`;
    s.exported = rules.exported(
      {
        node: s.draft.node,
        name: s.name,
        kind: s.kind,
        parent: p === undefined ? undefined : { kind: p.kind, name: p.name, exported: p.exported ?? false },
      },
      s.outer,
      exportedNames,
    );
    return s;
  };
  syms.forEach((_s, i) => resolve(i));
  return syms;
}

const TYPE_KINDS: ReadonlySet<SymbolKind> = new Set(['class', 'interface', 'type', 'enum']);

function topLevelTypes(syms: readonly Sym[]): Map<string, number> {
  const types = new Map<string, number>();
  syms.forEach((s, i) => {
    if (s.parent === undefined && TYPE_KINDS.has(s.kind) && !types.has(s.name)) types.set(s.name, i);
  });
  return types;
}

function toParsedSymbol(rules: LanguageRules, s: Sym, source: string): ParsedSymbol {
  return {
    kind: s.kind,
    name: s.name,
    qualifiedName: s.qualifiedName ?? s.name,
    span: spanOf(s.outer),
    nameSpan: spanOf(s.draft.nameNode),
    signature: rules.signature(s.draft.node, source),
    doc: rules.doc(s.draft.node, s.outer),
    parent: s.parent,
    exported: s.exported ?? false,
  };
}

function buildReferences(
  rules: LanguageRules,
  syms: readonly Sym[],
  captures: readonly RefCapture[],
  source: string,
): ParsedReference[] {
  const defNames = new Set(syms.map((s) => s.draft.nameNode.id));
  const byName = new Map<number, RefDraft>();
  for (const c of captures) {
    const target = refTarget(c.node, source);
    if (target === undefined || defNames.has(target.name.id) || !isIdentifier(target.name)) continue;
    if (NOT_REFERENCES.has(target.name.parent?.type ?? '')) continue;
    if (c.kind === 'type' && (isQualifierSegment(target.name) || rules.builtinTypes?.has(target.name.text) === true))
      continue;
    const prev = byName.get(target.name.id);
    if (
      prev !== undefined &&
      (prev.origin < c.origin || (prev.origin === c.origin && REF_RANK.indexOf(prev.kind) <= REF_RANK.indexOf(c.kind)))
    )
      continue;
    byName.set(target.name.id, { capture: c.node, ...target, kind: c.kind, origin: c.origin });
  }
  const refs = [...byName.values()].sort((a, b) => a.name.startIndex - b.name.startIndex);

  // Innermost enclosing definition by a sweep over both lists in source order.
  const order = syms.map((_s, i) => i);
  const ownerIndex = rules.owner === undefined ? new Map<string, number>() : topLevelTypes(syms);
  const stack: number[] = [];
  let next = 0;
  return refs.map((r): ParsedReference => {
    const pos = r.name.startIndex;
    for (; next < order.length && syms[next]!.draft.node.startIndex <= pos; next++) {
      const start = syms[next]!.draft.node.startIndex;
      while (stack.length > 0 && syms[stack.at(-1)!]!.draft.node.endIndex <= start) stack.pop();
      stack.push(next);
    }
    while (stack.length > 0 && syms[stack.at(-1)!]!.draft.node.endIndex <= pos) stack.pop();
    let enclosing = stack.at(-1);
    // `impl Trait for Type`: the impl header belongs to the type it implements for.
    if (enclosing === undefined && rules.owner !== undefined) {
      const owner = rules.owner(r.capture, source);
      if (owner !== undefined) enclosing = ownerIndex.get(owner);
    }
    return { kind: r.kind, name: r.name.text, qualifier: r.qualifier, span: spanOf(r.name), enclosing };
  });
}

/** ERROR and MISSING nodes, descending only into subtrees that contain one. */
function countErrors(node: Node): number {
  if (node.isError || node.isMissing) return 1;
  let n = 0;
  for (const c of node.children) if (c !== null && c.hasError) n += countErrors(c);
  return n;
}
