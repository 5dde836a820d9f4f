import type { Node } from 'web-tree-sitter';
import type { ParsedImport } from '../ports/code-parser.ts';
import { spanOf, stringValue } from './syntax.ts';

/**
 * Import readers: no upstream tags file captures imports, so each language's
 * extra query marks import nodes (`@import…`) and these turn one node into
 * imports. Conventions: a module bound as a whole (`import * as ns`,
 * Python `import a.b as c`, a Go or Rust crate import) is the name `*`, with
 * the local alias when there is one; a default import is the name `default`.
 */

type ImportName = { name: string; alias: string | undefined };

const imp = (node: Node, module: string, names: ImportName[], typeOnly = false): ParsedImport => ({
  module,
  names,
  span: spanOf(node),
  typeOnly,
});

const named = (n: Node): Node[] => n.namedChildren.filter((c): c is Node => c !== null);
const hasToken = (n: Node, token: string): boolean => n.children.some((c) => c !== null && c.type === token);
const noSpace = (s: string): string => s.replace(/\s+/g, '');

// ---------------------------------------------------------------- JavaScript / TypeScript

function specifiers(list: Node, type: string): { names: ImportName[]; allTypes: boolean } {
  const specs = named(list).filter((c) => c.type === type);
  return {
    names: specs.map((s) => ({
      name: s.childForFieldName('name')?.text ?? s.text,
      alias: s.childForFieldName('alias')?.text,
    })),
    allTypes: specs.length > 0 && specs.every((s) => hasToken(s, 'type')),
  };
}

/** What `const x = require('m')` / `const { a, b: c } = require('m')` binds. */
function requireBindings(call: Node): ImportName[] {
  const decl = call.parent;
  const target = decl?.type === 'variable_declarator' ? decl.childForFieldName('name') : null;
  if (target === null || target === undefined) return [];
  if (target.type === 'identifier') return [{ name: '*', alias: target.text }];
  if (target.type !== 'object_pattern') return [];
  return named(target).flatMap((p): ImportName[] => {
    if (p.type === 'shorthand_property_identifier_pattern') return [{ name: p.text, alias: undefined }];
    if (p.type !== 'pair_pattern') return [];
    const key = p.childForFieldName('key')?.text;
    const value = p.childForFieldName('value');
    return key === undefined ? [] : [{ name: key, alias: value?.type === 'identifier' ? value.text : undefined }];
  });
}

export function jsImport(node: Node, capture: string): ParsedImport[] {
  if (capture === 'import.require' || capture === 'import.dynamic') {
    const arg = node.childForFieldName('arguments')?.namedChild(0);
    if (arg === null || arg === undefined) return [];
    const names = capture === 'import.require' ? requireBindings(node) : [{ name: '*', alias: undefined }];
    return [imp(node, stringValue(arg), names)];
  }
  const source = node.childForFieldName('source');
  const statementType = hasToken(node, 'type');
  if (node.type === 'export_statement') {
    if (source === null) return [];
    const clause = named(node).find((c) => c.type === 'export_clause');
    const ns = named(node).find((c) => c.type === 'namespace_export');
    if (clause !== undefined) {
      const { names, allTypes } = specifiers(clause, 'export_specifier');
      return [imp(node, stringValue(source), names, statementType || allTypes)];
    }
    return [imp(node, stringValue(source), [{ name: '*', alias: ns?.namedChild(0)?.text }], statementType)];
  }
  // import_statement
  const requireClause = named(node).find((c) => c.type === 'import_require_clause');
  if (requireClause !== undefined) {
    const from = requireClause.childForFieldName('source');
    const local = requireClause.namedChild(0)?.text;
    return from === null ? [] : [imp(node, stringValue(from), [{ name: '*', alias: local }], statementType)];
  }
  if (source === null) return [];
  const clause = named(node).find((c) => c.type === 'import_clause');
  const names: ImportName[] = [];
  let allTypes = false;
  for (const c of clause === undefined ? [] : named(clause)) {
    if (c.type === 'identifier') names.push({ name: 'default', alias: c.text });
    else if (c.type === 'namespace_import') names.push({ name: '*', alias: c.namedChild(0)?.text });
    else if (c.type === 'named_imports') {
      const s = specifiers(c, 'import_specifier');
      names.push(...s.names);
      allTypes = s.allTypes && names.length === s.names.length;
    }
  }
  return [imp(node, stringValue(source), names, statementType || allTypes)];
}

// ---------------------------------------------------------------- Python

function pyName(n: Node): ImportName {
  if (n.type === 'aliased_import')
    return { name: n.childForFieldName('name')?.text ?? n.text, alias: n.childForFieldName('alias')?.text };
  return { name: n.text, alias: undefined };
}

export function pythonImport(node: Node): ParsedImport[] {
  const names = node.childrenForFieldName('name').filter((c): c is Node => c !== null);
  if (node.type === 'import_statement') {
    // `import a.b as c, d`: one import per module, bound as a whole.
    return names.map((n) => {
      const { name, alias } = pyName(n);
      return imp(node, name, [{ name: '*', alias }]);
    });
  }
  const module = node.type === 'future_import_statement' ? '__future__' : node.childForFieldName('module_name')?.text;
  if (module === undefined) return [];
  const wildcard = named(node).some((c) => c.type === 'wildcard_import');
  return [imp(node, noSpace(module), wildcard ? [{ name: '*', alias: undefined }] : names.map(pyName))];
}

// ---------------------------------------------------------------- Go

/** `"fmt"` → `*`; `x "a/b"` → `*` as `x`; `. "d"` → `*` as `.`; `_ "c"` → no names (side effects only). */
export function goImport(node: Node): ParsedImport[] {
  const path = node.childForFieldName('path');
  if (path === null) return [];
  const alias = node.childForFieldName('name');
  const names = alias?.type === 'blank_identifier' ? [] : [{ name: '*', alias: alias?.text }];
  return [imp(node, stringValue(path), names)];
}

// ---------------------------------------------------------------- Java

/** `import a.b.C;` → module `a.b`, name `C`; `import a.b.*;` → module `a.b`, `*`; `import static a.B.m;` → `a.B`, `m`. */
export function javaImport(node: Node): ParsedImport[] {
  const path = named(node).find((c) => c.type === 'scoped_identifier' || c.type === 'identifier');
  if (path === undefined) return [];
  const full = noSpace(path.text);
  if (named(node).some((c) => c.type === 'asterisk')) return [imp(node, full, [{ name: '*', alias: undefined }])];
  const dot = full.lastIndexOf('.');
  return [imp(node, dot < 0 ? '' : full.slice(0, dot), [{ name: full.slice(dot + 1), alias: undefined }])];
}

// ---------------------------------------------------------------- Rust

interface UseLeaf {
  readonly path: readonly string[];
  readonly name: string;
  readonly alias: string | undefined;
}

const segments = (n: Node | null): string[] =>
  n === null
    ? []
    : noSpace(n.text)
        .split('::')
        .filter((s) => s !== '');

/** Flattens a use tree: `a::{b, c as d, e::{f}}` → `a::b`, `a::c as d`, `a::e::f`. */
function flattenUse(n: Node, prefix: readonly string[], out: UseLeaf[]): void {
  switch (n.type) {
    case 'use_list':
      for (const c of named(n)) flattenUse(c, prefix, out);
      return;
    case 'scoped_use_list': {
      const p = [...prefix, ...segments(n.childForFieldName('path'))];
      const list = n.childForFieldName('list');
      if (list !== null) flattenUse(list, p, out);
      return;
    }
    case 'use_as_clause': {
      const segs = [...prefix, ...segments(n.childForFieldName('path'))];
      const name = segs.pop();
      if (name !== undefined) out.push({ path: segs, name, alias: n.childForFieldName('alias')?.text });
      return;
    }
    default: {
      // scoped_identifier, identifier, self/crate/super, use_wildcard (`a::*`)
      const segs = [...prefix, ...segments(n)];
      const name = segs.pop();
      if (name !== undefined) out.push({ path: segs, name, alias: undefined });
    }
  }
}

/**
 * `use crate::a::{b, c as d}` → module `crate::a` with `b` and `c as d`; a
 * use of a bare crate (`use serde;`, `extern crate foo as bar;`) binds the
 * crate as a whole (`*`).
 */
export function rustImport(node: Node): ParsedImport[] {
  if (node.type === 'extern_crate_declaration') {
    const name = node.childForFieldName('name')?.text;
    return name === undefined ? [] : [imp(node, name, [{ name: '*', alias: node.childForFieldName('alias')?.text }])];
  }
  const arg = node.childForFieldName('argument');
  if (arg === null) return [];
  const leaves: UseLeaf[] = [];
  flattenUse(arg, [], leaves);
  const byModule = new Map<string, ImportName[]>();
  for (const l of leaves) {
    const whole = l.path.length === 0;
    const module = whole ? l.name : l.path.join('::');
    const names = byModule.get(module) ?? [];
    names.push(whole ? { name: '*', alias: l.alias } : { name: l.name, alias: l.alias });
    byModule.set(module, names);
  }
  return [...byModule].map(([module, names]) => imp(node, module, names));
}
