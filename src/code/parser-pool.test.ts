import { afterAll, describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import type { CodeLanguage } from '../ports/code-parser.ts';
import { createParserPool } from './parser-pool.ts';
import { createTreeSitterParser } from './tree-sitter-parser.ts';

const SOURCES: ReadonlyArray<[CodeLanguage, string]> = [
  ['typescript', "import { b } from './b';\nexport class A {\n  run(): number {\n    return b(this.x);\n  }\n}\n"],
  ['python', 'from .b import b\n\ndef a():\n    """Doc."""\n    return b()\n'],
  ['go', 'package a\n\nfunc A() int { return B() }\n'],
  ['rust', 'pub fn a() -> u32 { b() }\n'],
];

describe('createParserPool', () => {
  const pool = createParserPool(2, { maxHeapMb: 512 });
  afterAll(() => pool.close());

  it('answers what the parser on this thread answers, for many files in flight at once', async () => {
    const local = await createTreeSitterParser();
    const many = Array.from({ length: 12 }, (_, i) => SOURCES[i % SOURCES.length] as [CodeLanguage, string]);
    const parsed = await Promise.all(many.map(([language, source]) => pool.parse(language, source)));
    parsed.forEach((p, i) => {
      const [language, source] = many[i] as [CodeLanguage, string];
      expect(p).toEqual(local.parse(language, source));
    });
    expect(parsed[0]?.symbols.map((s) => s.qualifiedName)).toEqual(['A', 'A.run']);
  });

  it('rejects a parse that fails on the thread, and keeps answering', async () => {
    await expect(pool.parse('cobol' as CodeLanguage, 'x')).rejects.toThrow(/cobol/);
    expect((await pool.parse('go', 'package a\n\nfunc Z() {}\n')).symbols.map((s) => s.name)).toEqual(['Z']);
  });

  it('caps each thread’s heap: a file that needs more fails, not retryable, and a new thread takes over', async () => {
    const small = createParserPool(1, { maxHeapMb: 32 });
    try {
      // 1 MiB of calls: about 340,000 references, well over 32 MB of parse results.
      const err = await small.parse('javascript', 'f(a);\n'.repeat(170_000)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('PAYLOAD_TOO_LARGE');
      expect((err as AppError).retryable).toBe(false);
      expect((err as AppError).message).toMatch(/CODE_PARSE_WORKER_MAX_MB = 32 MB/);
      expect((await small.parse('go', 'package a\n\nfunc Z() {}\n')).symbols.map((s) => s.name)).toEqual(['Z']);
    } finally {
      await small.close();
    }
  });
});
