import type { Node } from 'web-tree-sitter';
import type { Span } from '../ports/code-parser.ts';

/** Small helpers over web-tree-sitter nodes shared by the language rules. */

export const spanOf = (n: Node): Span => ({
  startLine: n.startPosition.row,
  startColumn: n.startPosition.column,
  endLine: n.endPosition.row,
  endColumn: n.endPosition.column,
});

/** One line, runs of whitespace collapsed, at most `max` characters (an ellipsis marks a cut). */
export function oneLine(text: string, max = 200): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

const IDENTIFIER = /(?:^|_)identifier$/;

/** Leaf name nodes across the grammars (`identifier`, `type_identifier`, `field_identifier`, …). */
export const isIdentifier = (n: Node): boolean => IDENTIFIER.test(n.type) || n.type === 'constant';

/** Qualified names: the last segment is the name, what comes before is the qualifier. */
const QUALIFIED = new Set([
  'member_expression', // JS/TS a.b
  'nested_type_identifier', // TS ns.T
  'nested_identifier', // TS a.b (namespace names)
  'attribute', // Python a.b
  'selector_expression', // Go a.b()
  'qualified_type', // Go pkg.T
  'scoped_type_identifier', // Java a.B, Rust a::B
  'scoped_identifier', // Rust a::b, Java a.b
  'field_expression', // Rust a.b
  'field_access', // Java a.b
  'method_invocation', // Java a.b()
]);
const NAME_FIELDS = ['property', 'name', 'attribute', 'field'] as const;
const GENERIC = new Set(['generic_type', 'subscript']);

function lastPart(n: Node): Node | null {
  for (const f of NAME_FIELDS) {
    const c = n.childForFieldName(f);
    if (c !== null) return c;
  }
  return n.namedChild(n.namedChildCount - 1);
}

/**
 * The name a reference points at and its qualifier as written: `a.b.c` → `c`
 * qualified by `a.b`; `Foo<T>` → `Foo`; a bare `c` whose parent is a member
 * access takes the parent's receiver as qualifier (`this.x.foo()` → `this.x`).
 * Undefined when the node is not a name (`mixin(A)`, `this`).
 */
export function refTarget(node: Node, source: string): { name: Node; qualifier: string | undefined } | undefined {
  let n: Node = node;
  for (let depth = 0; depth < 8; depth++) {
    if (GENERIC.has(n.type)) {
      const inner = n.childForFieldName('name') ?? n.childForFieldName('type') ?? n.childForFieldName('value');
      const next = inner ?? n.namedChild(0);
      if (next === null) return undefined;
      n = next;
    } else if (QUALIFIED.has(n.type)) {
      const next = lastPart(n);
      if (next === null) return undefined;
      n = next;
    } else break;
  }
  if (!isIdentifier(n)) return undefined;
  let outer: Node = node;
  if (outer.id === n.id) {
    const p = n.parent;
    if (p !== null && QUALIFIED.has(p.type) && lastPart(p)?.id === n.id) outer = p;
  }
  const qualifier = oneLine(source.slice(outer.startIndex, n.startIndex))
    .replace(/(?:\?\.|\.|::)$/, '')
    .trim();
  return { name: n, qualifier: qualifier === '' ? undefined : qualifier };
}

/** `a` or `b` in `a.b.C`: a segment of a qualified name that is not its last part. */
export function isQualifierSegment(n: Node): boolean {
  const p = n.parent;
  return p !== null && QUALIFIED.has(p.type) && (lastPart(p)?.id !== n.id || isQualifierSegment(p));
}

/**
 * The comments directly above `node` (no blank line between them and it),
 * nearest last, skipping over sibling nodes of the `skip` types (Rust
 * attributes). Stops at the first sibling `isComment` rejects.
 */
export function commentsAbove(node: Node, isComment: (n: Node) => boolean, skip?: ReadonlySet<string>): Node[] {
  const out: Node[] = [];
  let row = node.startPosition.row;
  for (let s = node.previousNamedSibling; s !== null; s = s.previousNamedSibling) {
    if (s.endPosition.row < row - 1) break;
    if (skip?.has(s.type) === true) {
      row = s.startPosition.row;
      continue;
    }
    if (!isComment(s)) break;
    out.unshift(s);
    row = s.startPosition.row;
  }
  return out;
}

/** A `/** … *\/` comment without its markers and leading `*`s. */
export function stripBlockDoc(text: string): string | undefined {
  const body = text
    .replace(/^\/\*\*/, '')
    .replace(/\*\/$/, '')
    .split('\n')
    .map((l) => l.replace(/^\s*\* ?/, '').trimEnd());
  return trimLines(body);
}

/** Consecutive line comments (`///`, `//`) without their markers. */
export function stripLineDocs(texts: readonly string[], marker: RegExp): string | undefined {
  return trimLines(texts.map((t) => t.replace(marker, '').trimEnd()));
}

/** Drops blank leading/trailing lines and the common indentation. */
export function trimLines(lines: readonly string[]): string | undefined {
  let start = 0;
  let end = lines.length;
  while (start < end && lines[start]?.trim() === '') start++;
  while (end > start && lines[end - 1]?.trim() === '') end--;
  const kept = dedent(lines.slice(start, end));
  return kept.length === 0 ? undefined : kept.join('\n');
}

function dedent(lines: readonly string[]): string[] {
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^\s*/.exec(l)?.[0].length ?? 0);
  const cut = indents.length === 0 ? 0 : Math.min(...indents);
  return lines.map((l) => l.slice(cut));
}

/** Python's `inspect.cleandoc`: the first line is trimmed, the rest lose their common indentation. */
export function cleanDocstring(raw: string): string | undefined {
  const lines = raw.split('\n');
  return trimLines([(lines[0] ?? '').trim(), ...dedent(lines.slice(1)).map((l) => l.trimEnd())]);
}

/** Text of a string literal without its quotes (JS/TS, Python, Go, Rust string nodes). */
export function stringValue(n: Node): string {
  const t = n.text;
  const m = /^[a-zA-Z]*("""|'''|"|'|`)([\s\S]*)\1$/.exec(t);
  return m?.[2] ?? t;
}
