import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempTrees } from '../../test/helpers/code-fixtures.ts';
import { AppError } from '../errors.ts';
import { walkRepository } from './walker.ts';

const trees = tempTrees('engram-walker-');
afterEach(() => trees.cleanup());

const OPTS = { maxFileBytes: 4_096, maxFiles: 100 };

describe('walkRepository', () => {
  it('does not follow a .gitignore that is a link, to /dev/zero or out of the repository, as git does not', async () => {
    const outside = trees.make({ 'ignore-list': 'secret.ts\n' });
    const root = trees.make({ 'src/a.ts': 'export {};\n', 'src/secret.ts': 'export {};\n', 'sub/b.ts': '' });
    symlinkSync(path.join(outside, 'ignore-list'), path.join(root, 'src', '.gitignore'));
    symlinkSync('/dev/zero', path.join(root, 'sub', '.gitignore'));
    const walk = await walkRepository(root, OPTS);
    expect(walk.files.map((f) => f.path)).toEqual(['src/a.ts', 'src/secret.ts', 'sub/b.ts']);
    expect(walk.skippedLinks).toBe(2);
  });

  it('fails, without retries, on a committed .gitignore over the size cap: the walk could not honour it', async () => {
    const root = trees.make({ '.gitignore': `${'*.gen.ts\n'.repeat(1_000)}`, 'a.ts': '' });
    const err = await walkRepository(root, OPTS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('PAYLOAD_TOO_LARGE');
    expect((err as AppError).retryable).toBe(false);
    expect((err as AppError).message).toMatch(/\.gitignore.*CODE_MAX_FILE_BYTES/);
  });

  it('reads walked files only while they are still regular files inside the tree', async () => {
    const outside = trees.make({ 'secret.ts': 'export const secret = 1;\n' });
    const root = trees.make({ 'a.ts': 'export const a = 1;\n', 'b.ts': '', 'c.ts': '' });
    const walk = await walkRepository(root, OPTS);
    const [a, b, c] = walk.files;
    if (a === undefined || b === undefined || c === undefined) throw new Error('walk missed files');
    expect(Buffer.from((await walk.read(a)) ?? []).toString()).toBe('export const a = 1;\n');
    // Swapped after the walk: a link to /dev/zero, a link out of the tree, a file grown past the cap.
    rmSync(b.absPath);
    symlinkSync('/dev/zero', b.absPath);
    rmSync(c.absPath);
    symlinkSync(path.join(outside, 'secret.ts'), c.absPath);
    expect(await walk.read(b)).toBeUndefined();
    expect(await walk.read(c)).toBeUndefined();
    writeFileSync(a.absPath, 'x'.repeat(OPTS.maxFileBytes + 1));
    expect(await walk.read(a)).toBeUndefined();
  });
});
