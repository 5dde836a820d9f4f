import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';
import type { PackageIdentity } from './code.types.ts';

/**
 * SCIP symbol ids (https://github.com/sourcegraph/scip, scip.proto):
 * `<scheme> <manager> <package> <version> <descriptors>`, e.g.
 * `scip-typescript npm my-lib 1.2.0 src/`util.ts`/Parser#parse().`.
 * Descriptors: `name/` namespace (each path segment), `Name#` type, `name.`
 * term, `name().` method (`name(+1).` for the next overload), `name!` macro.
 * Names outside `[A-Za-z0-9_+$-]` are wrapped in backticks (backticks doubled);
 * a space in the package fields is doubled and an empty field is `.`.
 */

/** The indexer that would emit these ids for a language (its scheme). */
export const SCIP_SCHEMES: Readonly<Record<CodeLanguage, string>> = {
  javascript: 'scip-typescript',
  typescript: 'scip-typescript',
  tsx: 'scip-typescript',
  python: 'scip-python',
  go: 'scip-go',
  java: 'scip-java',
  rust: 'rust-analyzer',
};

const SIMPLE = /^[A-Za-z0-9_+$-]+$/;

export const escapeName = (name: string): string => (SIMPLE.test(name) ? name : `\`${name.replaceAll('`', '``')}\``);

const escapeField = (s: string): string => (s === '' ? '.' : s.replaceAll(' ', '  '));

/** The package part of an id for a repository without a manifest: no manager, the repository's name. */
export const fallbackPackage = (repoName: string): PackageIdentity => ({ manager: '.', name: repoName, version: '.' });

/** `src/`util.ts`/`: a file path as namespace descriptors. */
export const fileDescriptors = (path: string): string =>
  path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => `${escapeName(s)}/`)
    .join('');

/** The descriptor a symbol adds after its parents' ones. */
export function symbolDescriptor(kind: SymbolKind, name: string, overload = 0): string {
  const n = escapeName(name);
  switch (kind) {
    case 'class':
    case 'interface':
    case 'type':
    case 'enum':
      return `${n}#`;
    case 'function':
    case 'method':
      return `${n}(${overload > 0 ? `+${overload}` : ''}).`;
    case 'module':
      return `${n}/`;
    case 'macro':
      return `${n}!`;
    case 'variable':
    case 'constant':
    case 'field':
      return `${n}.`;
  }
}

export function scipSymbol(language: CodeLanguage, pkg: PackageIdentity, descriptors: string): string {
  return [
    SCIP_SCHEMES[language],
    escapeField(pkg.manager),
    escapeField(pkg.name),
    escapeField(pkg.version),
    descriptors,
  ].join(' ');
}

/** Heuristic: a `symbol=` value is a SCIP id when it has the five space-separated parts of one. */
export const looksLikeScipSymbol = (s: string): boolean =>
  /^(scip-[a-z]+|rust-analyzer|local) /.test(s) && s.trim().split(/ +/).length >= 5;

const SIMPLE_CHAR = /[A-Za-z0-9_+$-]/;

/**
 * The name in an id's last descriptor, unescaped (`parse` in
 * `… src/`util.ts`/Parser#parse().`): the `name` column of the symbol the
 * id names, which lookups by id go through. Undefined when the id does not
 * end in a descriptor this module writes.
 */
export function scipSymbolName(id: string): string | undefined {
  let end = id.length;
  if (id.endsWith(').')) {
    const open = id.lastIndexOf('(');
    if (open < 0 || !/^\((\+\d+)?\)\.$/.test(id.slice(open))) return undefined;
    end = open;
  } else if (/[#./!]$/.test(id)) end -= 1;
  else return undefined;
  if (id[end - 1] === '`') {
    // `na``me`: back to the backtick that opens the name, past doubled ones.
    let i = end - 2;
    for (;;) {
      const tick = id.lastIndexOf('`', i);
      if (tick < 0) return undefined;
      if (id[tick - 1] === '`') i = tick - 2;
      else return id.slice(tick + 1, end - 1).replaceAll('``', '`') || undefined;
    }
  }
  let start = end;
  while (start > 0 && SIMPLE_CHAR.test(id[start - 1] ?? '')) start -= 1;
  return start < end ? id.slice(start, end) : undefined;
}
