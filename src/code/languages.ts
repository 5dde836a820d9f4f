import type { Node } from 'web-tree-sitter';
import type { CodeLanguage, ParsedImport, SymbolKind } from '../ports/code-parser.ts';
import { goImport, javaImport, jsImport, pythonImport, rustImport } from './imports.ts';
import {
  cleanDocstring,
  commentsAbove,
  oneLine,
  refTarget,
  stringValue,
  stripBlockDoc,
  stripLineDocs,
} from './syntax.ts';

/**
 * What differs between languages: the grammar, which upstream `tags.scm`
 * files to use, our own extra patterns, and the rules for export, doc
 * comments, signatures and owners.
 *
 * Query capture conventions (upstream tags use the first two):
 * - `@definition.<tag kind>` / `@reference.<tag kind>` with `@name`: upstream tags.
 * - `@symbol.<SymbolKind>` / `@ref.<ReferenceKind>` with `@name`: ours; they win
 *   over an upstream capture of the same node.
 * - `@fallback.<ReferenceKind>`: a reference only when nothing else captured the
 *   node (every type name is a `type` reference unless it is a `new X` or an `extends X`).
 * - `@import` (or `@import.<how>`): a node the language's import reader turns into imports.
 * - `@exported`: a name exported elsewhere in the file (`export { a }`).
 */

/** A definition as the rules see it, before indexes are assigned. */
export interface DefView {
  readonly node: Node;
  readonly name: string;
  readonly kind: SymbolKind;
  readonly parent: { readonly kind: SymbolKind; readonly name: string; readonly exported: boolean } | undefined;
}

export interface LanguageRules {
  readonly language: CodeLanguage;
  /** npm package and wasm file of the grammar. */
  readonly grammar: { readonly pkg: string; readonly wasm: string };
  /** Packages whose `queries/tags.scm` are concatenated (TypeScript adds JavaScript's). */
  readonly tags: readonly string[];
  /** Our patterns: extra definitions and references, exports, imports. */
  readonly extra: string;
  /** The node that carries doc comments and export wrappers (`export const f = …` → the export statement). */
  outer(def: Node): Node;
  /** The kind, refined from the tag's kind by node type and parent kind. */
  refineKind(def: Node, kind: SymbolKind, parentKind: SymbolKind | undefined): SymbolKind;
  /** One-line declaration header. */
  signature(def: Node, source: string): string;
  doc(def: Node, outer: Node): string | undefined;
  exported(d: DefView, outer: Node, exportedNames: ReadonlySet<string>): boolean;
  /** The type a method belongs to when it is not nested in it (Go receivers, Rust impl blocks). */
  owner?(node: Node, source: string): string | undefined;
  readImport(node: Node, capture: string): ParsedImport[];
  /** Predeclared type names that are not worth a `type` reference (Go's `string`, `error`, …). */
  readonly builtinTypes?: ReadonlySet<string>;
}

/** The header of `def`: its text up to `body` (or all of it), one line, trailing `{`/`:`/`=` trimmed. */
function header(def: Node, body: Node | null, source: string, start: Node = def): string {
  const end = body !== null && body.startIndex > start.startIndex ? body.startIndex : def.endIndex;
  return oneLine(source.slice(start.startIndex, end).replace(/[\s{:=;]+$/, ''));
}

/** The last comment directly above `n`, if it is a `/** … *\/` block. */
function blockDocAbove(n: Node, isComment: (c: Node) => boolean): string | undefined {
  const last = commentsAbove(n, isComment).at(-1);
  return last !== undefined && last.text.startsWith('/**') ? stripBlockDoc(last.text) : undefined;
}

const hasKeyword = (n: Node | null, word: string): boolean =>
  n !== null && n.children.some((c) => c !== null && c.type === word);

// ---------------------------------------------------------------- JavaScript / TypeScript

const JS_COMMON = `
(program (lexical_declaration (variable_declarator name: (identifier) @name) @symbol.variable))
(program (variable_declaration (variable_declarator name: (identifier) @name) @symbol.variable))
(program (export_statement declaration: (lexical_declaration (variable_declarator name: (identifier) @name) @symbol.variable)))
(program (export_statement declaration: (variable_declaration (variable_declarator name: (identifier) @name) @symbol.variable)))
(export_statement !source (export_clause (export_specifier name: (_) @exported)))
(export_statement !source value: (identifier) @exported)
((assignment_expression
  left: (member_expression object: (identifier) @_module property: (property_identifier) @_exports)
  right: [(identifier) @exported (object (shorthand_property_identifier) @exported)])
  (#eq? @_module "module") (#eq? @_exports "exports"))
(import_statement) @import
(export_statement source: (_)) @import
((call_expression function: (identifier) @_fn arguments: (arguments . (string) .)) @import.require (#eq? @_fn "require"))
(call_expression function: (import) arguments: (arguments . (string))) @import.dynamic
`;

const JSX = `
((jsx_opening_element name: (_) @name @ref.reference) (#match? @name "^[A-Z]"))
((jsx_self_closing_element name: (_) @name @ref.reference) (#match? @name "^[A-Z]"))
`;

const JS_EXTRA = `${JS_COMMON}${JSX}
(field_definition property: [(property_identifier) (private_property_identifier)] @name) @symbol.field
(class_heritage (_) @name @ref.extends)
`;

const TS_EXTRA = `${JS_COMMON}
(type_alias_declaration name: (type_identifier) @name) @symbol.type
(enum_declaration name: (identifier) @name) @symbol.enum
(internal_module name: (_) @name) @symbol.module
(public_field_definition name: [(property_identifier) (private_property_identifier)] @name) @symbol.field
(property_signature name: (property_identifier) @name) @symbol.field
(extends_clause value: (_) @name @ref.extends)
(implements_clause (_) @name @ref.implements)
(extends_type_clause type: (_) @name @ref.extends)
(type_identifier) @name @fallback.type
`;

const JS_WRAPPERS = new Set(['export_statement', 'ambient_declaration', 'expression_statement']);

function jsDeclaration(def: Node): Node {
  const p = def.parent;
  if (
    def.type === 'variable_declarator' &&
    p !== null &&
    (p.type === 'lexical_declaration' || p.type === 'variable_declaration') &&
    p.namedChildren.filter((c) => c?.type === 'variable_declarator').length === 1
  )
    return p;
  return def;
}

function jsBody(def: Node): Node | null {
  const body = def.childForFieldName('body');
  if (body !== null) return body;
  const value = def.childForFieldName('value') ?? def.childForFieldName('right');
  return value !== null && /function|arrow/.test(value.type) ? value.childForFieldName('body') : null;
}

const isJsDoc = (c: Node): boolean => c.type === 'comment';

const isPrivateMember = (def: Node, name: string): boolean =>
  name.startsWith('#') || def.children.some((c) => c?.type === 'accessibility_modifier' && c.text !== 'public');

function jsRules(language: CodeLanguage, wasm: string, pkg: string, tags: string[], extra: string): LanguageRules {
  return {
    language,
    grammar: { pkg, wasm },
    tags,
    extra,
    outer(def) {
      let n = jsDeclaration(def);
      while (n.parent !== null && JS_WRAPPERS.has(n.parent.type)) n = n.parent;
      return n;
    },
    refineKind(def, kind) {
      if (kind !== 'variable') return kind;
      const decl = def.parent;
      return decl?.type === 'lexical_declaration' && decl.firstChild?.type === 'const' ? 'constant' : 'variable';
    },
    signature(def, source) {
      return header(def, jsBody(def), source, jsDeclaration(def));
    },
    doc(_def, outer) {
      return blockDocAbove(outer, isJsDoc);
    },
    exported(d, outer, exportedNames) {
      if (d.parent !== undefined) {
        if (d.parent.kind === 'function' || d.parent.kind === 'method') return false;
        if (d.parent.kind === 'module') return outer.type === 'export_statement';
        return d.parent.exported && !isPrivateMember(d.node, d.name);
      }
      if (outer.type === 'export_statement' || exportedNames.has(d.name)) return true;
      // CommonJS: `exports.f = …`, `module.exports.f = …`
      const left = d.node.type === 'assignment_expression' ? d.node.childForFieldName('left') : null;
      return left !== null && /^(module\.)?exports\./.test(left.text);
    },
    readImport: jsImport,
  };
}

// ---------------------------------------------------------------- Python

const PY_EXTRA = `
(class_definition superclasses: (argument_list [(identifier) (attribute) (subscript)] @name @ref.extends))
(import_statement) @import
(import_from_statement) @import
(future_import_statement) @import
`;

const pythonRules: LanguageRules = {
  language: 'python',
  grammar: { pkg: 'tree-sitter-python', wasm: 'tree-sitter-python.wasm' },
  tags: ['tree-sitter-python'],
  extra: PY_EXTRA,
  outer(def) {
    const p = def.parent;
    return p !== null && (p.type === 'decorated_definition' || p.type === 'expression_statement') ? p : def;
  },
  refineKind(_def, kind, parentKind) {
    return kind === 'function' && parentKind === 'class' ? 'method' : kind;
  },
  signature(def, source) {
    return header(def, def.childForFieldName('body'), source);
  },
  doc(def) {
    const first = def.childForFieldName('body')?.firstNamedChild;
    const str = first?.type === 'expression_statement' ? first.firstNamedChild : null;
    return str?.type === 'string' ? cleanDocstring(stringValue(str)) : undefined;
  },
  exported(d) {
    const dunder = /^__\w+__$/.test(d.name);
    if (d.name.startsWith('_') && !dunder) return false;
    if (d.parent === undefined) return true;
    return d.parent.kind === 'class' && d.parent.exported;
  },
  readImport: pythonImport,
};

// ---------------------------------------------------------------- Go

const GO_EXTRA = `
(source_file (const_declaration (const_spec name: (identifier) @name) @symbol.constant))
(source_file (var_declaration (var_spec name: (identifier) @name) @symbol.variable))
(source_file (var_declaration (var_spec_list (var_spec name: (identifier) @name) @symbol.variable)))
(method_elem name: (field_identifier) @name) @symbol.method
(field_declaration_list (field_declaration !name type: [(type_identifier) (qualified_type) (generic_type)] @name @ref.extends))
(field_declaration_list (field_declaration !name type: (pointer_type [(type_identifier) (qualified_type) (generic_type)] @name @ref.extends)))
(interface_type (type_elem [(type_identifier) (qualified_type)] @name @ref.extends))
(import_spec) @import
`;

const GO_SPECS = new Set(['type_spec', 'const_spec', 'var_spec']);
const isGoComment = (c: Node): boolean => c.type === 'comment' && c.text.startsWith('//');

/** `func (r *T[K]) M()` → `T`. */
const GO_BUILTIN_TYPES = new Set(
  'any bool byte comparable complex64 complex128 error float32 float64 int int8 int16 int32 int64 rune string uint uint8 uint16 uint32 uint64 uintptr'.split(
    ' ',
  ),
);

/** A type, const or var spec alone in its declaration is documented (and introduced) by the declaration. */
function goOuter(def: Node): Node {
  const p = def.parent;
  if (!GO_SPECS.has(def.type) || p === null) return def;
  const decl = p.type.endsWith('_spec_list') ? p.parent : p;
  return decl !== null && decl.namedChildren.filter((c) => c !== null && GO_SPECS.has(c.type)).length === 1
    ? decl
    : def;
}

function goReceiverType(method: Node, source: string): string | undefined {
  let t = method.childForFieldName('receiver')?.namedChild(0)?.childForFieldName('type') ?? null;
  while (t !== null && (t.type === 'pointer_type' || t.type === 'parenthesized_type')) t = t.namedChild(0);
  return t === null ? undefined : refTarget(t, source)?.name.text;
}

const goRules: LanguageRules = {
  language: 'go',
  grammar: { pkg: 'tree-sitter-go', wasm: 'tree-sitter-go.wasm' },
  tags: ['tree-sitter-go'],
  extra: GO_EXTRA,
  outer: goOuter,
  refineKind(def, kind) {
    if (def.type !== 'type_spec') return kind;
    const t = def.childForFieldName('type')?.type;
    return t === 'struct_type' ? 'class' : t === 'interface_type' ? 'interface' : 'type';
  },
  signature(def, source) {
    const body =
      def.childForFieldName('body') ??
      def.childForFieldName('type')?.namedChildren.find((c) => c?.type === 'field_declaration_list') ??
      null;
    return header(def, body, source, goOuter(def));
  },
  doc(def, outer) {
    const comments = commentsAbove(outer, isGoComment);
    const fallback = comments.length === 0 && outer.id !== def.id ? commentsAbove(def, isGoComment) : comments;
    return fallback.length === 0
      ? undefined
      : stripLineDocs(
          fallback.map((c) => c.text),
          /^\/\/ ?/,
        );
  },
  exported(d) {
    if (d.parent !== undefined && (d.parent.kind === 'function' || d.parent.kind === 'method')) return false;
    return /^\p{Lu}/u.test(d.name);
  },
  owner(node, source) {
    return node.type === 'method_declaration' ? goReceiverType(node, source) : undefined;
  },
  readImport: goImport,
  builtinTypes: GO_BUILTIN_TYPES,
};

// ---------------------------------------------------------------- Java

const JAVA_EXTRA = `
(enum_declaration name: (identifier) @name) @symbol.enum
(record_declaration name: (identifier) @name) @symbol.class
(annotation_type_declaration name: (identifier) @name) @symbol.interface
(constructor_declaration name: (identifier) @name) @symbol.method
(field_declaration declarator: (variable_declarator name: (identifier) @name)) @symbol.field
(constant_declaration declarator: (variable_declarator name: (identifier) @name)) @symbol.constant
(superclass (_) @name @ref.extends)
(super_interfaces (type_list (_) @name @ref.implements))
(extends_interfaces (type_list (_) @name @ref.extends))
(type_identifier) @name @fallback.type
(import_declaration) @import
`;

const isJavaComment = (c: Node): boolean => c.type === 'block_comment' || c.type === 'line_comment';
const JAVA_ANNOTATIONS = /^(?:@[\w.]+(?:\([^)]*\))?\s*)+/;

const javaRules: LanguageRules = {
  language: 'java',
  grammar: { pkg: 'tree-sitter-java', wasm: 'tree-sitter-java.wasm' },
  tags: ['tree-sitter-java'],
  extra: JAVA_EXTRA,
  outer: (def) => def,
  refineKind: (_def, kind) => kind,
  signature(def, source) {
    return header(def, def.childForFieldName('body'), source).replace(JAVA_ANNOTATIONS, '');
  },
  doc(_def, outer) {
    return blockDocAbove(outer, isJavaComment);
  },
  exported(d) {
    const modifiers = d.node.namedChildren.find((c) => c?.type === 'modifiers') ?? null;
    if (hasKeyword(modifiers, 'public')) return true;
    return d.parent !== undefined && d.parent.kind === 'interface' && d.parent.exported;
  },
  readImport: javaImport,
};

// ---------------------------------------------------------------- Rust

const RUST_EXTRA = `
(const_item name: (identifier) @name) @symbol.constant
(static_item name: (identifier) @name) @symbol.constant
(function_signature_item name: (identifier) @name) @symbol.method
(call_expression function: (scoped_identifier name: (identifier) @name @ref.call))
(impl_item trait: (_) @name @ref.implements)
(impl_item type: (_) @name @ref.type)
(trait_item bounds: (trait_bounds [(type_identifier) (scoped_type_identifier) (generic_type)] @name @ref.extends))
(type_identifier) @name @fallback.type
(use_declaration) @import
(extern_crate_declaration) @import
`;

const RUST_KINDS: Readonly<Record<string, SymbolKind>> = {
  enum_item: 'enum',
  type_item: 'type',
  struct_item: 'class',
  union_item: 'class',
};
const RUST_ATTRIBUTES = new Set(['attribute_item']);
const isRustDoc = (c: Node): boolean =>
  (c.type === 'line_comment' && /^\/\/\/(?!\/)/.test(c.text)) ||
  (c.type === 'block_comment' && c.text.startsWith('/**'));

/** The impl block `node` belongs to: a method in its body, or a type in its header. */
function rustImpl(node: Node): Node | null {
  const p = node.parent;
  if (p?.type === 'declaration_list') return p.parent?.type === 'impl_item' ? p.parent : null;
  for (let n = p; n !== null; n = n.parent) {
    if (n.type === 'impl_item') return n;
    if (n.type === 'declaration_list' || n.type === 'source_file' || n.type === 'block') return null;
  }
  return null;
}

const rustRules: LanguageRules = {
  language: 'rust',
  grammar: { pkg: 'tree-sitter-rust', wasm: 'tree-sitter-rust.wasm' },
  tags: ['tree-sitter-rust'],
  extra: RUST_EXTRA,
  outer: (def) => def,
  refineKind(def, kind) {
    const k = RUST_KINDS[def.type];
    if (k !== undefined) return k;
    // Upstream tags call every function in a `{ … }` item list a method, inline `mod` bodies included.
    if (def.type === 'function_item' && kind === 'method' && def.parent?.parent?.type === 'mod_item') return 'function';
    return kind;
  },
  signature(def, source) {
    return header(def, def.childForFieldName('body'), source);
  },
  doc(_def, outer) {
    const docs = commentsAbove(outer, isRustDoc, RUST_ATTRIBUTES);
    if (docs.length === 0) return undefined;
    const last = docs.at(-1);
    if (last?.type === 'block_comment') return stripBlockDoc(last.text);
    return stripLineDocs(
      docs.filter((c) => c.type === 'line_comment').map((c) => c.text),
      /^\/\/\/ ?/,
    );
  },
  exported(d) {
    const vis = d.node.namedChildren.find((c) => c?.type === 'visibility_modifier');
    if (vis !== undefined) return vis?.text === 'pub';
    if (d.kind === 'macro') {
      const attrs = commentsAbove(d.node, (c) => c.type === 'attribute_item');
      return attrs.some((a) => a.text.includes('macro_export'));
    }
    if (d.parent?.kind === 'interface') return d.parent.exported;
    const impl = rustImpl(d.node);
    return impl !== null && impl.childForFieldName('trait') !== null;
  },
  owner(node, source) {
    const impl = rustImpl(node);
    const type = impl?.childForFieldName('type');
    return type === null || type === undefined ? undefined : refTarget(type, source)?.name.text;
  },
  readImport: rustImport,
};

export const LANGUAGE_RULES: Readonly<Record<CodeLanguage, LanguageRules>> = {
  javascript: jsRules(
    'javascript',
    'tree-sitter-javascript.wasm',
    'tree-sitter-javascript',
    ['tree-sitter-javascript'],
    JS_EXTRA,
  ),
  typescript: jsRules(
    'typescript',
    'tree-sitter-typescript.wasm',
    'tree-sitter-typescript',
    ['tree-sitter-javascript', 'tree-sitter-typescript'],
    TS_EXTRA,
  ),
  tsx: jsRules(
    'tsx',
    'tree-sitter-tsx.wasm',
    'tree-sitter-typescript',
    ['tree-sitter-javascript', 'tree-sitter-typescript'],
    TS_EXTRA + JSX,
  ),
  python: pythonRules,
  go: goRules,
  java: javaRules,
  rust: rustRules,
};
