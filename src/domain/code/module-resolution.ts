import type { CodeLanguage } from '../../ports/code-parser.ts';

const JS_EXTENSIONS = ['.ts', '.tsx', '.d.ts', '.js', '.jsx', '.mjs', '.cjs', '.mts', '.cts'];
/** TypeScript's ESM convention: `./util.js` in source names `./util.ts`. */
const JS_SWAPS: Readonly<Record<string, readonly string[]>> = {
  '.js': ['.ts', '.tsx'],
  '.jsx': ['.tsx'],
  '.mjs': ['.mts'],
  '.cjs': ['.cts'],
};

/** Posix `a/b/../c` → `a/c`; undefined when it climbs above the root. */
function normalize(p: string): string | undefined {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(seg);
  }
  return out.join('/');
}

const dirOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

function resolveJs(fromPath: string, spec: string, has: (p: string) => boolean): string | undefined {
  if (!spec.startsWith('./') && !spec.startsWith('../') && spec !== '.' && spec !== '..') return undefined;
  const base = normalize(`${dirOf(fromPath)}/${spec}`);
  if (base === undefined) return undefined;
  const candidates = [base];
  const ext = base.slice(base.lastIndexOf('.'));
  for (const swap of JS_SWAPS[ext] ?? []) candidates.push(base.slice(0, -ext.length) + swap);
  for (const e of JS_EXTENSIONS) candidates.push(`${base}${e}`);
  for (const e of JS_EXTENSIONS) candidates.push(base === '' ? `index${e}` : `${base}/index${e}`);
  return candidates.find(has);
}

function resolvePython(fromPath: string, spec: string, has: (p: string) => boolean): string | undefined {
  const dots = /^\.*/.exec(spec)?.[0].length ?? 0;
  const rest = spec.slice(dots).split('.').filter(Boolean).join('/');
  const bases: string[] = [];
  if (dots > 0) {
    // `.x` is the importing file's package; each further dot goes up one package.
    let dir = dirOf(fromPath);
    for (let i = 1; i < dots; i++) dir = dirOf(dir);
    bases.push(normalize(`${dir}/${rest}`) ?? '');
  } else {
    // Absolute imports of the repository's own packages, from the root or a src/ layout.
    bases.push(rest, `src/${rest}`);
  }
  for (const b of bases) {
    const hit = [`${b}.py`, b === '' ? '__init__.py' : `${b}/__init__.py`].find(has);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/**
 * The repository file an import names, when it is one of the repository's
 * own: relative JavaScript/TypeScript specifiers (with extension, `.js` →
 * `.ts` and `index` resolution) and Python modules (relative, or absolute from
 * the root or `src/`). Package imports, path aliases and other languages are
 * external for now: undefined.
 */
export function resolveModule(
  language: CodeLanguage,
  fromPath: string,
  specifier: string,
  has: (path: string) => boolean,
): string | undefined {
  switch (language) {
    case 'javascript':
    case 'typescript':
    case 'tsx':
      return resolveJs(fromPath, specifier, has);
    case 'python':
      return resolvePython(fromPath, specifier, has);
    default:
      return undefined;
  }
}
