import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempTrees } from '../../test/helpers/code-fixtures.ts';
import { openTsPrecise } from './ts-precise.ts';

const trees = tempTrees('engram-precise-');
afterEach(() => trees.cleanup());

const MAX_FILE_BYTES = 65_536;

describe('openTsPrecise', () => {
  it('resolves inside the repository and never reads a linked file: /dev/zero, or one out of the tree', async () => {
    const outside = trees.make({ 'secret.ts': 'export function leaked(): number {\n  return 1;\n}\n' });
    const root = trees.make({
      'tsconfig.json': JSON.stringify({ compilerOptions: { strict: true } }),
      'src/util.ts': 'export function util(): number {\n  return 1;\n}\n',
      'src/a.ts': [
        "import { util } from './util';",
        "import { zero } from './zero';",
        "import { leaked } from './linked';",
        'export const x = util() + zero + leaked();',
        '',
      ].join('\n'),
    });
    symlinkSync('/dev/zero', path.join(root, 'src', 'zero.ts'));
    symlinkSync(path.join(outside, 'secret.ts'), path.join(root, 'src', 'linked.ts'));
    const session = openTsPrecise(root, ['src/a.ts', 'src/util.ts'], { maxFileBytes: MAX_FILE_BYTES });
    expect(session).toBeDefined();
    try {
      const names = session?.occurrencesIn('src/a.ts').map((o) => [o.name, o.definitions[0]?.path]);
      expect(names).toEqual([['util', 'src/util.ts']]);
    } finally {
      session?.close();
    }
  });

  it('does not read a tsconfig.json that is a link, out of the tree or to /dev/zero', async () => {
    const outside = trees.make({ 'tsconfig.json': '{}', 'base.json': '{}' });
    const linked = trees.make({ 'a.ts': 'export const a = 1;\n' });
    symlinkSync(path.join(outside, 'tsconfig.json'), path.join(linked, 'tsconfig.json'));
    expect(openTsPrecise(linked, ['a.ts'], { maxFileBytes: MAX_FILE_BYTES })).toBeUndefined();
    const zero = trees.make({ 'a.ts': 'export const a = 1;\n' });
    symlinkSync('/dev/zero', path.join(zero, 'tsconfig.json'));
    expect(openTsPrecise(zero, ['a.ts'], { maxFileBytes: MAX_FILE_BYTES })).toBeUndefined();
  });
});
