import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempTrees } from '../../test/helpers/code-fixtures.ts';
import { RepoFiles, type RepoRead } from './safe-fs.ts';

const trees = tempTrees('engram-safe-fs-');
afterEach(() => trees.cleanup());

const text = (r: RepoRead): string | undefined => ('bytes' in r ? r.bytes.toString('utf8') : undefined);
const reason = (r: RepoRead): string | undefined => ('refused' in r ? r.refused : undefined);

/** A repository next to a directory outside it holding a secret and a large sparse file. */
function layout() {
  const outside = trees.make({ 'secret.json': '{"name":"leaked-secret"}' });
  const big = path.join(outside, 'big');
  writeFileSync(big, '');
  truncateSync(big, 64 * 1024 * 1024);
  const root = trees.make({ 'package.json': '{"name":"ok"}', 'src/a.ts': 'export const a = 1;\n' });
  symlinkSync('/dev/zero', path.join(root, 'zero.json'));
  symlinkSync(path.join(outside, 'secret.json'), path.join(root, 'linked.json'));
  symlinkSync(big, path.join(root, 'big.json'));
  symlinkSync(outside, path.join(root, 'out'));
  mkdirSync(path.join(root, 'dir'));
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  writeFileSync(path.join(root, 'large.txt'), 'x'.repeat(2_000));
  return { root, outside };
}

describe(RepoFiles.name, () => {
  for (const mode of ['read', 'readSync'] as const) {
    describe(mode, () => {
      const read = async (root: string, p: string, max = 1_000): Promise<RepoRead> => {
        const files = await RepoFiles.open(root);
        return mode === 'read' ? files.read(p, max) : files.readSync(p, max);
      };

      it('reads a regular file inside the repository, by repository path or absolute path', async () => {
        const { root } = layout();
        expect(text(await read(root, 'package.json'))).toBe('{"name":"ok"}');
        expect(text(await read(root, path.join(root, 'src', 'a.ts')))).toBe('export const a = 1;\n');
      });

      it('never opens /dev/zero, a FIFO or a directory', async () => {
        const { root } = layout();
        expect(reason(await read(root, 'zero.json'))).toBe('not-a-file');
        expect(reason(await read(root, 'fifo'))).toBe('not-a-file');
        expect(reason(await read(root, 'dir'))).toBe('not-a-file');
      });

      it('does not follow a link to a file outside the repository, nor a linked directory out of it', async () => {
        const { root } = layout();
        expect(reason(await read(root, 'linked.json'))).toBe('not-a-file');
        expect(reason(await read(root, 'big.json'))).toBe('not-a-file');
        expect(reason(await read(root, 'out/secret.json'))).toBe('outside');
        expect(reason(await read(root, '../secret.json'))).toBe('outside');
        expect(reason(await read(root, '/etc/hostname'))).toBe('outside');
      });

      it('refuses a file over the cap without reading it, and reports a missing one', async () => {
        const { root } = layout();
        expect(await read(root, 'large.txt', 1_999)).toEqual({ refused: 'too-large', size: 2_000 });
        expect(text(await read(root, 'large.txt', 2_000))?.length).toBe(2_000);
        expect(reason(await read(root, 'nope.json'))).toBe('missing');
      });
    });
  }
});
