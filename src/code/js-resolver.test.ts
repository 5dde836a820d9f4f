import { afterEach, describe, expect, it } from 'vitest';
import { tempTrees } from '../../test/helpers/code-fixtures.ts';
import { createJsResolver } from './js-resolver.ts';

const trees = tempTrees('engram-resolver-');
const repo = (files: Record<string, string>): string => trees.make(files);
afterEach(() => trees.cleanup());

const paths = (target: string) => JSON.stringify({ compilerOptions: { baseUrl: '.', paths: { '@lib': [target] } } });

describe('createJsResolver', () => {
  it('answers per importing directory: the same specifier resolves by the nearest tsconfig and relative path', () => {
    const root = repo({
      'a/tsconfig.json': paths('./lib/one.ts'),
      'a/lib/one.ts': 'export const one = 1;',
      'a/x.ts': '',
      'a/y.ts': '',
      'a/util.ts': '',
      'a/sub/z.ts': '',
      'a/sub/util.ts': '',
      'b/tsconfig.json': paths('./lib/two.ts'),
      'b/lib/two.ts': 'export const two = 2;',
      'b/w.ts': '',
    });
    const r = createJsResolver(root);
    expect(r.resolve('a/x.ts', '@lib')).toBe('a/lib/one.ts');
    // Asked again from a sibling: the same answer.
    expect(r.resolve('a/y.ts', '@lib')).toBe('a/lib/one.ts');
    // Another directory, another tsconfig: not the answer kept for a/.
    expect(r.resolve('b/w.ts', '@lib')).toBe('b/lib/two.ts');
    expect(r.resolve('a/x.ts', './util')).toBe('a/util.ts');
    expect(r.resolve('a/sub/z.ts', './util')).toBe('a/sub/util.ts');
    expect(r.resolve('a/x.ts', './missing')).toBeUndefined();
    expect(r.resolve('a/x.ts', 'node:fs')).toBeUndefined();
  });
});
