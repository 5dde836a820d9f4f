import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PackageIdentity } from '../domain/code/code.types.ts';

const read = (root: string, name: string): Promise<string | undefined> =>
  readFile(path.join(root, name), 'utf8').catch(() => undefined);

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
 */
export async function detectPackage(root: string): Promise<PackageIdentity | undefined> {
  const pkgJson = await read(root, 'package.json');
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
  const goMod = await read(root, 'go.mod');
  const module = goMod === undefined ? undefined : /^module\s+(\S+)/m.exec(goMod)?.[1];
  if (module !== undefined) return { manager: 'gomod', name: module, version: '.' };
  const cargo = await read(root, 'Cargo.toml');
  const crate = cargo === undefined ? undefined : tomlValue(cargo, 'package', 'name');
  if (cargo !== undefined && crate !== undefined) {
    return { manager: 'cargo', name: crate, version: tomlValue(cargo, 'package', 'version') ?? '.' };
  }
  const pyproject = await read(root, 'pyproject.toml');
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
