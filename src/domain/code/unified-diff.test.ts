import { describe, expect, it } from 'vitest';
import { parseUnifiedDiff } from './unified-diff.ts';
import { pageRank, renderRepoMap } from './repo-map.ts';

describe(parseUnifiedDiff.name, () => {
  it('takes the old side’s changed lines; an insertion counts as the line before it', () => {
    const diff = [
      'diff --git a/src/a.ts b/src/a.ts',
      'index 1..2 100644',
      '--- a/src/a.ts',
      '+++ b/src/a.ts',
      '@@ -3,4 +3,5 @@ function f() {',
      ' one',
      '-two',
      '+deux',
      ' three',
      '+inserted',
      ' four',
      '@@ -20,0 +22,1 @@',
      '+after twenty',
      '\\ No newline at end of file',
    ].join('\n');
    expect(parseUnifiedDiff(diff)).toEqual([{ path: 'src/a.ts', lines: [4, 5, 20], added: false }]);
  });

  it('marks new files and keeps deleted ones by their old path', () => {
    const diff = [
      '--- /dev/null',
      '+++ b/src/new.ts',
      '@@ -0,0 +1,2 @@',
      '+a',
      '+b',
      '--- a/src/gone.ts',
      '+++ /dev/null',
      '@@ -1,2 +0,0 @@',
      '-a',
      '-b',
    ].join('\n');
    expect(parseUnifiedDiff(diff)).toEqual([
      { path: 'src/new.ts', lines: [1], added: true },
      { path: 'src/gone.ts', lines: [1, 2], added: false },
    ]);
  });

  it('finds nothing in a text that is not a diff', () => {
    expect(parseUnifiedDiff('hello\nworld')).toEqual([]);
  });
});

describe(pageRank.name, () => {
  it('ranks the node everyone points at first, and sums to 1', () => {
    const ranks = pageRank(
      ['a', 'b', 'c', 'hub'],
      [
        { src: 'a', dst: 'hub', weight: 1 },
        { src: 'b', dst: 'hub', weight: 1 },
        { src: 'c', dst: 'hub', weight: 0.5 },
        { src: 'hub', dst: 'a', weight: 1 },
      ],
    );
    const sorted = [...ranks.entries()].sort((x, y) => y[1] - x[1]).map(([id]) => id);
    expect(sorted[0]).toBe('hub');
    expect(sorted[1]).toBe('a');
    expect([...ranks.values()].reduce((s, v) => s + v, 0)).toBeCloseTo(1, 6);
  });
});

describe(renderRepoMap.name, () => {
  it('stays within the budget', () => {
    const symbol = (name: string, path: string, line: number) => ({
      symbol: {
        id: name,
        repoId: 'r',
        repoName: 'r',
        path,
        scipSymbol: name,
        kind: 'function' as const,
        name,
        qualifiedName: name,
        language: 'typescript' as const,
        span: { startLine: line, startColumn: 0, endLine: line + 1, endColumn: 1 },
        signature: `export function ${name}(): void`,
        doc: null,
        exported: true,
      },
      rank: 1 / (line + 1),
    });
    const ranked = Array.from({ length: 50 }, (_, i) => symbol(`fn${i}`, `src/f${i % 5}.ts`, i));
    for (const tokens of [10, 40, 100, 1000]) {
      const { text, symbols } = renderRepoMap(ranked, tokens);
      expect(text.length).toBeLessThanOrEqual(tokens * 4);
      expect(symbols.length).toBeLessThanOrEqual(50);
    }
    expect(renderRepoMap(ranked, 1000).text.split('\n')[0]).toBe('src/f0.ts:');
  });
});
