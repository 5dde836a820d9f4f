import type { PackageIdentity } from '../domain/code/code.types.ts';
import { errors } from '../errors.ts';
import { RepoFiles } from './safe-fs.ts';

/** Manifests (package.json, go.mod, Cargo.toml, pyproject.toml, requirements.txt) read at most, by default. */
export const MAX_MANIFEST_BYTES = 1_048_576;

/**
 * A manifest's text through {@link RepoFiles}: undefined when it is missing,
 * a link or a special file (as if absent: its content is not the
 * repository's); a manifest over the cap fails the run (not retried), since
 * the package identity, and with it every SCIP id, would silently change.
 */
export async function readManifestFile(
  repo: RepoFiles,
  rel: string,
  maxBytes = MAX_MANIFEST_BYTES,
): Promise<string | undefined> {
  const r = await repo.read(rel, maxBytes);
  if ('bytes' in r) return r.bytes.toString('utf8');
  if (r.refused === 'too-large') {
    throw errors.limitExceeded(`${rel} is larger than the ${maxBytes}-byte limit for manifests`, {
      path: rel,
      size: r.size,
      maxBytes,
    });
  }
  return undefined;
}

/** `key = "value"` inside a TOML `[section]` (enough for names and versions; not a TOML parser). */
function tomlValue(text: string, section: string, key: string): string | undefined {
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header !== null) {
      inSection = header[1]?.trim() === section;
      continue;
    }
    if (!inSection) continue;
    const m = new RegExp(`^${key}\\s*=\\s*["']([^"']*)["']`).exec(line);
    if (m !== null) return m[1];
  }
  return undefined;
}

/**
 * The package a repository's root declares, named as SCIP does: npm
 * (package.json), gomod (go.mod), cargo (Cargo.toml), pip (pyproject.toml).
 * Only the root is read: monorepo workspaces are one package for now.
 * Manifests are read through {@link readManifestFile}: never through a link.
 */
export async function detectPackage(
  root: string | RepoFiles,
  maxBytes = MAX_MANIFEST_BYTES,
): Promise<PackageIdentity | undefined> {
  const repo = typeof root === 'string' ? await RepoFiles.open(root) : root;
  const read = (name: string) => readManifestFile(repo, name, maxBytes);
  const pkgJson = await read('package.json');
  if (pkgJson !== undefined) {
    try {
      const p = JSON.parse(pkgJson) as { name?: unknown; version?: unknown };
      if (typeof p.name === 'string' && p.name !== '') {
        return { manager: 'npm', name: p.name, version: typeof p.version === 'string' ? p.version : '.' };
      }
    } catch {
      // Not JSON: try the other manifests.
    }
  }
  const goMod = await read('go.mod');
  const module = goMod === undefined ? undefined : /^module\s+(\S+)/m.exec(goMod)?.[1];
  if (module !== undefined) return { manager: 'gomod', name: module, version: '.' };
  const cargo = await read('Cargo.toml');
  const crate = cargo === undefined ? undefined : tomlValue(cargo, 'package', 'name');
  if (cargo !== undefined && crate !== undefined) {
    return { manager: 'cargo', name: crate, version: tomlValue(cargo, 'package', 'version') ?? '.' };
  }
  const pyproject = await read('pyproject.toml');
  if (pyproject !== undefined) {
    const name = tomlValue(pyproject, 'project', 'name') ?? tomlValue(pyproject, 'tool.poetry', 'name');
    if (name !== undefined) {
      const version =
        tomlValue(pyproject, 'project', 'version') ?? tomlValue(pyproject, 'tool.poetry', 'version') ?? '.';
      return { manager: 'pip', name, version };
    }
  }
  return undefined;
}
