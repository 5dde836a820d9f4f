import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createJsResolver } from './js-resolver.ts';

let dirs: string[] = [];
function repo(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'engram-resolver-'));
  dirs.push(root);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), content);
  }
  return root;
}
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

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
