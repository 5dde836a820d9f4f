import { describe, expect, it } from 'vitest';
import { chunkFile, codeQueryTerms, globToRegex, identifierTokens, type ChunkSymbol } from './code-chunks.ts';

const sym = (s: Partial<ChunkSymbol> & Pick<ChunkSymbol, 'id' | 'kind' | 'name' | 'startLine' | 'endLine'>) =>
  ({ parentId: null, qualifiedName: s.name, doc: null, ...s }) as ChunkSymbol;

describe('identifierTokens', () => {
  it('splits camelCase, PascalCase, acronyms, snake_case and digits, and keeps the joined identifier', () => {
    expect(identifierTokens('parseJSONFile')).toEqual(['parse', 'json', 'file', 'parsejsonfile']);
    expect(identifierTokens('parse_json_file')).toEqual(['parse', 'json', 'file', 'parsejsonfile']);
    expect(identifierTokens('HTMLParser2')).toEqual(['html', 'parser', '2', 'htmlparser2']);
    expect(identifierTokens('code-search.service')).toEqual(['code', 'search', 'service']);
    expect(identifierTokens('x')).toEqual(['x']);
  });

  it('makes query terms without stop words, each once', () => {
    expect(codeQueryTerms('the parseConfig of a parse')).toEqual(['parse', 'config', 'parseconfig']);
  });
});

describe('globToRegex', () => {
  const matches = (glob: string, path: string) => new RegExp(globToRegex(glob)).test(path);

  it('matches * within a segment, ** across segments and names without a slash anywhere', () => {
    expect(matches('src/*.ts', 'src/a.ts')).toBe(true);
    expect(matches('src/*.ts', 'src/x/a.ts')).toBe(false);
    expect(matches('src/**/*.ts', 'src/a.ts')).toBe(true);
    expect(matches('src/**/*.ts', 'src/x/y/a.ts')).toBe(true);
    expect(matches('*.py', 'lib/deep/mod.py')).toBe(true);
    expect(matches('*.py', 'lib/deep/mod.pyi')).toBe(false);
    expect(matches('lib/', 'lib/a/b.go')).toBe(true);
    expect(matches('lib/', 'other/lib.go')).toBe(false);
  });

  it('treats regex characters literally', () => {
    expect(matches('a+b(1).ts', 'a+b(1).ts')).toBe(true);
    expect(matches('a.ts', 'abts')).toBe(false);
    expect(matches('[ab].ts', 'a.ts')).toBe(false);
  });
});

describe('chunkFile', () => {
  const source = [
    '/** Adds. */', // 0
    'export function add(a: number, b: number): number {', // 1
    '  const inner = () => a;', // 2
    '  return inner() + b;', // 3
    '}', // 4
    'export class Box {', // 5
    '  size = 1;', // 6
    '  grow(): void {', // 7
    '    this.size++;', // 8
    '  }', // 9
    '}', // 10
  ].join('\n');
  const symbols = [
    sym({ id: 'add', kind: 'function', name: 'add', startLine: 1, endLine: 4, doc: 'Adds.' }),
    sym({ id: 'inner', kind: 'constant', name: 'inner', startLine: 2, endLine: 2, parentId: 'add' }),
    sym({ id: 'box', kind: 'class', name: 'Box', startLine: 5, endLine: 10 }),
    sym({ id: 'size', kind: 'field', name: 'size', startLine: 6, endLine: 6, parentId: 'box' }),
    sym({
      id: 'grow',
      kind: 'method',
      name: 'grow',
      qualifiedName: 'Box.grow',
      startLine: 7,
      endLine: 9,
      parentId: 'box',
    }),
  ];

  it('makes one chunk per function, method and class header, with one-based lines and the doc in the text', () => {
    const chunks = chunkFile({ path: 'src/m.ts', language: 'typescript', source }, symbols);
    expect(chunks.map((c) => [c.symbolId, c.startLine, c.endLine])).toEqual([
      ['add', 2, 5],
      ['box', 6, 11],
      ['grow', 8, 10],
    ]);
    const [add, box] = chunks;
    expect(add?.content.startsWith('export function add')).toBe(true);
    expect(add?.text.startsWith('Adds.\n')).toBe(true);
    expect(box?.content).toBe('export class Box {\n  size = 1;\n  grow(): void {\n}');
    expect(add?.searchText.split(' ')).toEqual(expect.arrayContaining(['src', 'm', 'add', 'inner']));
  });

  it('splits a symbol over the size cap into line-aligned parts', () => {
    const long = ['function big() {', ...Array.from({ length: 50 }, (_, i) => `  call${i}();`), '}'].join('\n');
    const chunks = chunkFile(
      { path: 'b.js', language: 'javascript', source: long },
      [sym({ id: 'big', kind: 'function', name: 'big', startLine: 0, endLine: 51, doc: 'Big.' })],
      { maxChars: 200 },
    );
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => c.content.length <= 200)).toBe(true);
    expect(chunks.map((c) => c.part)).toEqual(chunks.map((_, i) => i + 1));
    expect(chunks[1]?.startLine).toBe((chunks[0]?.endLine ?? 0) + 1);
    expect(chunks.filter((c) => c.doc !== null)).toHaveLength(1);
  });

  it('cuts a file without symbols into windows and skips blank ones', () => {
    const text = [...Array.from({ length: 130 }, (_, i) => `step(${i});`), '', '', ''].join('\n');
    const chunks = chunkFile({ path: 'run.js', language: 'javascript', source: text }, [], { windowLines: 60 });
    expect(chunks.map((c) => [c.kind, c.startLine, c.endLine])).toEqual([
      ['block', 1, 60],
      ['block', 61, 120],
      ['block', 121, 133],
    ]);
    expect(chunkFile({ path: 'e.js', language: 'javascript', source: '\n\n' }, [])).toEqual([]);
  });

  it('keeps Python docstrings only once: they are part of the code', () => {
    const py = 'def f():\n    """Doc."""\n    return 1\n';
    const [c] = chunkFile({ path: 'f.py', language: 'python', source: py }, [
      sym({ id: 'f', kind: 'function', name: 'f', startLine: 0, endLine: 2, doc: 'Doc.' }),
    ]);
    expect(c?.text).toBe(c?.content);
    expect(c?.doc).toBe('Doc.');
  });
});
