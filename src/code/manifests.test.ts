import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempTrees } from '../../test/helpers/code-fixtures.ts';
import { entryFile } from '../domain/code/code-indexer.ts';
import { AppError } from '../errors.ts';
import { normalizePipName, readManifest } from './manifests.ts';

const trees = tempTrees('engram-manifest-');
const repo = (files: Record<string, string>): string => trees.make(files);
afterEach(() => trees.cleanup());

describe('readManifest', () => {
  it('reads npm dependencies by kind, workspaces and entry points, leaving out links between workspaces', async () => {
    const m = await readManifest(
      repo({
        'package.json': JSON.stringify({
          name: 'mono',
          version: '2.0.0',
          workspaces: ['packages/*'],
          devDependencies: { typescript: '~5.9.3' },
        }),
        'packages/core/package.json': JSON.stringify({
          name: '@m/core',
          exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
          peerDependencies: { react: '>=18' },
        }),
        'packages/cli/package.json': JSON.stringify({ name: '@m/cli', dependencies: { '@m/core': 'workspace:*' } }),
      }),
    );
    expect(m.identity).toEqual({ manager: 'npm', name: 'mono', version: '2.0.0' });
    expect(m.provides.map((p) => [p.name, p.dir])).toEqual([
      ['mono', ''],
      ['@m/cli', 'packages/cli'],
      ['@m/core', 'packages/core'],
    ]);
    expect(m.provides.find((p) => p.name === '@m/core')?.entryCandidates[0]).toBe('packages/core/dist/index.d.ts');
    expect(m.dependencies.map((d) => [d.name, d.version, d.kind, d.dir])).toEqual([
      ['typescript', '~5.9.3', 'dev', ''],
      ['react', '>=18', 'peer', 'packages/core'],
    ]);
  });

  it('reads go.mod, Cargo.toml, pyproject.toml and requirements.txt dependencies', async () => {
    const go = await readManifest(
      repo({
        'go.mod':
          'module example.com/app\n\ngo 1.22\n\nrequire example.com/lib v1.2.3\nrequire (\n\tgolang.org/x/text v0.14.0 // indirect\n)\n',
      }),
    );
    expect(go.provides.map((p) => [p.manager, p.name])).toEqual([['gomod', 'example.com/app']]);
    expect(go.dependencies.map((d) => [d.name, d.version])).toEqual([
      ['example.com/lib', 'v1.2.3'],
      ['golang.org/x/text', 'v0.14.0'],
    ]);

    const cargo = await readManifest(
      repo({
        'Cargo.toml':
          '[package]\nname = "app"\nversion = "0.1.0"\n\n[dependencies]\nserde = "1.0"\nmylib = { version = "0.3", path = "../mylib" }\nrenamed = { package = "real-name", version = "2" }\n\n[dev-dependencies]\ninsta = "1"\n',
      }),
    );
    expect(cargo.dependencies.map((d) => [d.name, d.version, d.kind])).toEqual([
      ['serde', '1.0', 'runtime'],
      ['mylib', '0.3', 'runtime'],
      ['real-name', '2', 'runtime'],
      ['insta', '1', 'dev'],
    ]);

    const py = await readManifest(
      repo({
        'pyproject.toml':
          '[project]\nname = "My_App"\nversion = "1.0"\ndependencies = [\n  "Requests>=2.31",\n  "my-lib[extra] ==1.0; python_version>\'3.8\'",\n]\n',
        'requirements.txt': '# pinned\nnumpy==1.26.0\n-r other.txt\n',
      }),
    );
    expect(py.provides.map((p) => [p.manager, p.name])).toEqual([['pip', 'my-app']]);
    expect(py.dependencies.map((d) => [d.name, d.version])).toEqual([
      ['requests', '>=2.31'],
      ['my-lib', '==1.0'],
      ['numpy', '==1.26.0'],
    ]);
  });

  it('reads no manifest through a link: to a file outside the tree, to /dev/zero, or in a linked directory', async () => {
    const outside = repo({
      'package.json': JSON.stringify({ name: 'outside-secret', dependencies: { leaked: '1' } }),
      'ws/package.json': JSON.stringify({ name: '@outside/ws', dependencies: { leaked2: '1' } }),
    });
    const root = repo({ 'package.json': JSON.stringify({ name: 'mono', workspaces: ['packages/*'] }) });
    mkdirSync(path.join(root, 'packages'));
    symlinkSync(path.join(outside, 'ws'), path.join(root, 'packages', 'linked'));
    symlinkSync('/dev/zero', path.join(root, 'go.mod'));
    symlinkSync(path.join(outside, 'package.json'), path.join(root, 'Cargo.toml'));
    const m = await readManifest(root);
    expect(m.provides.map((p) => p.name)).toEqual(['mono']);
    expect(m.dependencies).toEqual([]);

    const linkedRoot = repo({});
    symlinkSync(path.join(outside, 'package.json'), path.join(linkedRoot, 'package.json'));
    expect(await readManifest(linkedRoot)).toEqual({ identity: undefined, provides: [], dependencies: [] });
  });

  it('fails, without retries, on a manifest over the cap: the package identity would silently change', async () => {
    const root = repo({ 'package.json': JSON.stringify({ name: 'big', description: 'x'.repeat(2_000) }) });
    const err = await readManifest(root, 1_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('PAYLOAD_TOO_LARGE');
    expect((err as AppError).retryable).toBe(false);
    expect((await readManifest(root, 4_000)).identity?.name).toBe('big');
  });

  it('normalizes pip names as PEP 503 does', () => {
    expect(normalizePipName('Foo_Bar.baz')).toBe('foo-bar-baz');
  });
});

describe('entryFile', () => {
  const files = new Set(['src/index.ts', 'packages/core/src/main.ts', 'lib.js']);
  const has = (p: string) => files.has(p);
  it('maps build output and declarations back to the sources, else falls back to index files', () => {
    expect(entryFile('', ['dist/index.d.ts'], has)).toBe('src/index.ts');
    expect(entryFile('packages/core', ['packages/core/dist/main.js'], has)).toBe('packages/core/src/main.ts');
    expect(entryFile('', ['lib.js'], has)).toBe('lib.js');
    expect(entryFile('', ['dist/nothing.js'], has)).toBeUndefined();
  });
});
