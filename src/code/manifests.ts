import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { DependencyKind, PackageDependency, ProvidedPackage, RepoManifest } from '../domain/code/code.types.ts';
import { detectPackage, MAX_MANIFEST_BYTES, readManifestFile } from './package-identity.ts';
import { RepoFiles } from './safe-fs.ts';

/** PEP 503: `Foo_Bar.baz` and `foo-bar-baz` are the same distribution. */
export const normalizePipName = (name: string): string => name.toLowerCase().replace(/[-_.]+/g, '-');

/** Workspace packages read at most. */
const MAX_WORKSPACES = 500;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const NPM_DEP_FIELDS: ReadonlyArray<readonly [string, DependencyKind]> = [
  ['dependencies', 'runtime'],
  ['devDependencies', 'dev'],
  ['peerDependencies', 'peer'],
  ['optionalDependencies', 'optional'],
];

/** The first string an `exports` value leads to for `.`, preferring types, then import, then default. */
function exportTarget(v: unknown, depth = 0): string[] {
  if (depth > 5) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap((x) => exportTarget(x, depth + 1));
  if (!isObject(v)) return [];
  const keys = Object.keys(v);
  if (keys.some((k) => k.startsWith('.'))) return exportTarget(v['.'], depth + 1);
  const order = ['types', 'source', 'import', 'module', 'default', 'require', 'node'];
  const rank = (k: string): number => (order.includes(k) ? order.indexOf(k) : order.length);
  const ranked = [...keys].sort((a, b) => rank(a) - rank(b));
  return ranked.flatMap((k) => exportTarget(v[k], depth + 1));
}

/** Candidate entry files of a package.json, relative to its directory, best first. */
export function npmEntryCandidates(p: Json): string[] {
  const out: string[] = [...exportTarget(p.exports)];
  for (const field of ['source', 'types', 'typings', 'module', 'main']) {
    const v = p[field];
    if (typeof v === 'string') out.push(v);
  }
  out.push('src/index', 'index', 'lib/index');
  return [...new Set(out.map((s) => path.posix.normalize(s).replace(/^\.\//, '')))];
}

function npmPackage(p: Json, dir: string): { provides?: ProvidedPackage; deps: PackageDependency[] } {
  const deps: PackageDependency[] = [];
  for (const [field, kind] of NPM_DEP_FIELDS) {
    const d = p[field];
    if (!isObject(d)) continue;
    for (const [name, range] of Object.entries(d)) {
      deps.push({ manager: 'npm', name, version: typeof range === 'string' ? range : '.', kind, dir });
    }
  }
  if (typeof p.name !== 'string' || p.name === '') return { deps };
  const entries = npmEntryCandidates(p).map((e) => (dir === '' ? e : `${dir}/${e}`));
  return {
    provides: {
      manager: 'npm',
      name: p.name,
      version: typeof p.version === 'string' ? p.version : '.',
      dir,
      entryCandidates: entries,
    },
    deps,
  };
}

/** Workspace directories named by `workspaces` (plain paths and `dir/*` globs). */
async function workspaceDirs(root: string, p: Json): Promise<string[]> {
  const w = p.workspaces;
  const patterns = Array.isArray(w) ? w : isObject(w) && Array.isArray(w.packages) ? w.packages : [];
  const out: string[] = [];
  for (const pat of patterns) {
    if (typeof pat !== 'string' || pat.startsWith('!') || pat.includes('..')) continue;
    const clean = path.posix.normalize(pat).replace(/^\.\//, '').replace(/\/$/, '');
    if (clean.endsWith('/*') || clean.endsWith('/**')) {
      const base = clean.slice(0, clean.lastIndexOf('/'));
      if (base.includes('*')) continue;
      const entries = await readdir(path.join(root, base), { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory() && !e.name.startsWith('.')) out.push(`${base}/${e.name}`);
    } else if (!clean.includes('*')) out.push(clean);
  }
  return [...new Set(out)].sort().slice(0, MAX_WORKSPACES);
}

/** `[section]` bodies of a TOML file: enough for dependency tables and arrays (not a TOML parser). */
function tomlSections(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  out.set(current, []);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header !== null) {
      current = header[1]?.trim() ?? '';
      if (!out.has(current)) out.set(current, []);
    } else if (line !== '') out.get(current)?.push(line);
  }
  return out;
}

function cargoDeps(text: string): PackageDependency[] {
  const deps: PackageDependency[] = [];
  const sections = tomlSections(text);
  const kinds: ReadonlyArray<readonly [string, DependencyKind]> = [
    ['dependencies', 'runtime'],
    ['dev-dependencies', 'dev'],
    ['build-dependencies', 'dev'],
  ];
  for (const [section, kind] of kinds) {
    for (const line of sections.get(section) ?? []) {
      const m = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
      if (m === null) continue;
      const value = m[2] ?? '';
      const pkg = /package\s*=\s*"([^"]+)"/.exec(value)?.[1];
      const version = /^"([^"]*)"/.exec(value)?.[1] ?? /version\s*=\s*"([^"]+)"/.exec(value)?.[1] ?? '.';
      deps.push({ manager: 'cargo', name: pkg ?? m[1] ?? '', version, kind, dir: '' });
    }
  }
  return deps;
}

function goDeps(text: string): PackageDependency[] {
  const deps: PackageDependency[] = [];
  let inBlock = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (/^require\s*\($/.test(line)) inBlock = true;
    else if (inBlock && line === ')') inBlock = false;
    else {
      const m = inBlock ? /^(\S+)\s+(\S+)$/.exec(line) : /^require\s+(\S+)\s+(\S+)$/.exec(line);
      if (m !== null) deps.push({ manager: 'gomod', name: m[1] ?? '', version: m[2] ?? '.', kind: 'runtime', dir: '' });
    }
  }
  return deps;
}

/** `requests>=2.0; python_version<"3.9"` → `requests`, `>=2.0`. */
function pipRequirement(spec: string, kind: DependencyKind): PackageDependency | undefined {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;#]*)/.exec(spec);
  if (m === null || m[1] === undefined) return undefined;
  return { manager: 'pip', name: normalizePipName(m[1]), version: (m[3] ?? '').trim() || '.', kind, dir: '' };
}

function pyprojectDeps(text: string): PackageDependency[] {
  // `dependencies = [ "a>=1", "b" ]` under [project], possibly over several lines.
  const sections = tomlSections(text);
  const body = (sections.get('project') ?? []).join('\n');
  // The array ends at a `]` closing a line (extras like `pkg[extra]` have their own brackets).
  const arr = /(?:^|\n)dependencies\s*=\s*\[([\s\S]*?)\]\s*(?:\n|$)/.exec(body)?.[1] ?? '';
  const deps = [...arr.matchAll(/"([^"]*)"|'([^']*)'/g)].flatMap(
    (m) => pipRequirement(m[1] ?? m[2] ?? '', 'runtime') ?? [],
  );
  for (const line of sections.get('tool.poetry.dependencies') ?? []) {
    const m = /^([A-Za-z0-9._-]+)\s*=\s*(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[1] !== 'python') {
      deps.push({
        manager: 'pip',
        name: normalizePipName(m[1]),
        version: /"([^"]*)"/.exec(m[2] ?? '')?.[1] ?? '.',
        kind: 'runtime',
        dir: '',
      });
    }
  }
  return deps;
}

const requirementsDeps = (text: string): PackageDependency[] =>
  text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('-'))
    .flatMap((l) => pipRequirement(l, 'runtime') ?? []);

/**
 * What a repository's manifests declare: the packages it provides (the root's
 * identity, as SCIP names it, plus npm workspaces with their entry points) and
 * the packages it depends on — package.json dependency fields (root and
 * workspaces), go.mod `require`, Cargo.toml dependency tables, pyproject
 * `[project].dependencies` / Poetry and requirements.txt. Every manifest is
 * read through {@link readManifestFile}: a link is as if absent, one over
 * `maxBytes` fails the run.
 */
export async function readManifest(root: string, maxBytes = MAX_MANIFEST_BYTES): Promise<RepoManifest> {
  const repo = await RepoFiles.open(root);
  root = repo.realRoot;
  const read = (rel: string) => readManifestFile(repo, rel, maxBytes);
  const identity = await detectPackage(repo, maxBytes);
  const provides: ProvidedPackage[] = [];
  const dependencies: PackageDependency[] = [];

  const pkgText = await read('package.json');
  let rootPkg: Json | undefined;
  try {
    const parsed: unknown = pkgText === undefined ? undefined : JSON.parse(pkgText);
    rootPkg = isObject(parsed) ? parsed : undefined;
  } catch {
    rootPkg = undefined;
  }
  if (rootPkg !== undefined) {
    const own = npmPackage(rootPkg, '');
    if (own.provides !== undefined) provides.push(own.provides);
    dependencies.push(...own.deps);
    for (const dir of await workspaceDirs(root, rootPkg)) {
      const text = await read(`${dir}/package.json`);
      try {
        const parsed: unknown = text === undefined ? undefined : JSON.parse(text);
        if (!isObject(parsed)) continue;
        const ws = npmPackage(parsed, dir);
        if (ws.provides !== undefined) provides.push(ws.provides);
        dependencies.push(...ws.deps);
      } catch {
        // A workspace with a broken manifest provides nothing.
      }
    }
  }
  if (identity !== undefined && identity.manager !== 'npm') {
    const name = identity.manager === 'pip' ? normalizePipName(identity.name) : identity.name;
    provides.push({ ...identity, name, dir: '', entryCandidates: [] });
  }
  const goMod = await read('go.mod');
  if (goMod !== undefined) dependencies.push(...goDeps(goMod));
  const cargo = await read('Cargo.toml');
  if (cargo !== undefined) dependencies.push(...cargoDeps(cargo));
  const pyproject = await read('pyproject.toml');
  if (pyproject !== undefined) dependencies.push(...pyprojectDeps(pyproject));
  const requirements = await read('requirements.txt');
  if (requirements !== undefined) dependencies.push(...requirementsDeps(requirements));

  // Workspace packages depending on each other are not links to other repositories.
  const own = new Set(provides.map((p) => `${p.manager}\0${p.name}`));
  return {
    identity,
    provides,
    dependencies: dependencies.filter((d) => d.name !== '' && !own.has(`${d.manager}\0${d.name}`)),
  };
}
