import { createHash } from 'node:crypto';
import type { CodeLanguage, SymbolKind } from '../../ports/code-parser.ts';

/** Largest chunk, in characters: bigger symbols are split by lines into parts. */
export const CHUNK_MAX_CHARS = 4_000;
/** Lines per chunk of a file that defines no symbols. */
export const CHUNK_WINDOW_LINES = 60;
/** Query terms at most (like memory search). */
const MAX_TERMS = 64;

/** Symbols that make a chunk of their own: definitions with a body. */
const CHUNK_KINDS: ReadonlySet<SymbolKind> = new Set(['function', 'method', 'class', 'interface', 'type', 'enum']);
/** Symbols whose nested definitions stay inside their chunk (a closure is part of its function). */
const LEAF_KINDS: ReadonlySet<SymbolKind> = new Set(['function', 'method', 'variable', 'constant']);
/** A top-level variable or constant this long (lines) is chunked too: `export const handler = () => { … }`. */
const MIN_VALUE_LINES = 3;

/**
 * Words too common to search for: dropped from queries (not from the index,
 * whose `english` text config drops its own).
 */
const STOP_WORDS = new Set(
  'a an and are as at be by for from has have in is it its of on or that the this to was were will with'.split(' '),
);

const IDENTIFIER = /[\p{L}\p{N}_$]+/gu;
const CAMEL_PART = /\p{Lu}+(?!\p{Ll})|\p{Lu}?\p{Ll}+|\p{N}+|\p{Lo}+/gu;

/**
 * Identifier-aware tokens, lower-cased: each identifier split at snake_case,
 * camelCase / PascalCase and digit boundaries, plus the whole identifier with
 * its separators removed, so `parseJSONFile`, `parse_json_file` and "parse
 * json file" meet. Kebab-case splits because `-` is no identifier character.
 */
export function identifierTokens(text: string): string[] {
  const out: string[] = [];
  for (const ident of text.normalize('NFKC').match(IDENTIFIER) ?? []) {
    const parts = ident
      .split(/[_$]+/)
      .flatMap((p) => p.match(CAMEL_PART) ?? [])
      .map((p) => p.toLowerCase());
    out.push(...parts);
    if (parts.length > 1) out.push(parts.join(''));
  }
  return out;
}

/** A code search query's terms: identifier tokens without stop words, each once. */
export function codeQueryTerms(query: string): string[] {
  return [...new Set(identifierTokens(query))].filter((t) => !STOP_WORDS.has(t)).slice(0, MAX_TERMS);
}

/** A stored symbol, as the chunker needs it (lines zero-based, as the parser gives them). */
export interface ChunkSymbol {
  readonly id: string;
  readonly parentId: string | null;
  readonly kind: SymbolKind;
  readonly name: string;
  readonly qualifiedName: string;
  readonly startLine: number;
  readonly endLine: number;
  readonly doc: string | null;
}

/** One chunk to store: lines one-based and inclusive. */
export interface ChunkDraft {
  readonly symbolId: string | null;
  readonly kind: SymbolKind | 'block';
  readonly name: string;
  readonly qualifiedName: string | null;
  readonly part: number;
  readonly startLine: number;
  readonly endLine: number;
  readonly doc: string | null;
  /** The code, without a doc comment written before it. */
  readonly content: string;
  /** What is embedded and searched: the doc comment (when outside the code) and the code. */
  readonly text: string;
  /** SHA-256 of `text`: a vector computed from the same text is reused. */
  readonly contentHash: string;
  /** Identifier-split tokens of the path, the qualified name and `text`. */
  readonly searchText: string;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Splits lines into parts of at most `max` characters (a longer single line is cut). */
function splitByChars(lines: ReadonlyArray<{ n: number; text: string }>, max: number) {
  const parts: Array<Array<{ n: number; text: string }>> = [];
  let current: Array<{ n: number; text: string }> = [];
  let size = 0;
  for (const l of lines) {
    const line = l.text.length > max ? { n: l.n, text: l.text.slice(0, max) } : l;
    if (current.length > 0 && size + line.text.length + 1 > max) {
      parts.push(current);
      current = [];
      size = 0;
    }
    current.push(line);
    size += line.text.length + 1;
  }
  if (current.length > 0) parts.push(current);
  return parts;
}

/**
 * Cuts one file into search chunks: one per function, method, class,
 * interface, type and enum (and multi-line top-level values such as arrow
 * functions); a function's nested definitions stay in its chunk. A class
 * whose members are chunks of their own keeps its header, fields and the
 * first line of each member. Chunks over `maxChars` are split by lines into
 * parts; a file with no such symbol is cut into windows of `windowLines`.
 * Python docstrings are part of the code already; elsewhere the doc comment
 * is written before the code and is prepended to `text`.
 */
export function chunkFile(
  file: { readonly path: string; readonly language: CodeLanguage; readonly source: string },
  symbols: readonly ChunkSymbol[],
  opts: { readonly maxChars?: number; readonly windowLines?: number } = {},
): ChunkDraft[] {
  const maxChars = opts.maxChars ?? CHUNK_MAX_CHARS;
  const windowLines = opts.windowLines ?? CHUNK_WINDOW_LINES;
  const lines = file.source.split(/\r?\n/);
  const byId = new Map(symbols.map((s) => [s.id, s]));
  const insideLeaf = (s: ChunkSymbol): boolean => {
    for (let p = s.parentId === null ? undefined : byId.get(s.parentId); p !== undefined;) {
      if (LEAF_KINDS.has(p.kind)) return true;
      p = p.parentId === null ? undefined : byId.get(p.parentId);
    }
    return false;
  };
  const chunked = symbols.filter((s) => {
    if (insideLeaf(s)) return false;
    if (CHUNK_KINDS.has(s.kind)) return true;
    return (
      (s.kind === 'variable' || s.kind === 'constant') &&
      s.parentId === null &&
      s.endLine - s.startLine + 1 >= MIN_VALUE_LINES
    );
  });
  const chunkedIds = new Set(chunked.map((s) => s.id));

  const drafts: ChunkDraft[] = [];
  const emit = (
    base: Omit<ChunkDraft, 'part' | 'startLine' | 'endLine' | 'content' | 'text' | 'contentHash' | 'searchText'>,
    body: ReadonlyArray<{ n: number; text: string }>,
  ) => {
    const parts = splitByChars(body, maxChars);
    parts.forEach((p, i) => {
      const content = p.map((l) => l.text).join('\n');
      if (content.trim() === '') return;
      const doc = i === 0 ? base.doc : null;
      const text = doc !== null && file.language !== 'python' ? `${doc}\n${content}` : content;
      drafts.push({
        ...base,
        doc,
        part: i + 1,
        startLine: (p[0]?.n ?? 0) + 1,
        endLine: (p.at(-1)?.n ?? 0) + 1,
        content,
        text,
        contentHash: sha256(text),
        searchText: identifierTokens(`${file.path} ${base.qualifiedName ?? base.name} ${text}`).join(' '),
      });
    });
  };

  for (const s of chunked) {
    const children = symbols.filter((c) => c.parentId === s.id && chunkedIds.has(c.id));
    const body: Array<{ n: number; text: string }> = [];
    for (let n = s.startLine; n <= s.endLine && n < lines.length; n++) {
      // A member with a chunk of its own leaves only its first line in its class's chunk.
      if (children.some((c) => n > c.startLine && n <= c.endLine)) continue;
      body.push({ n, text: lines[n] ?? '' });
    }
    emit({ symbolId: s.id, kind: s.kind, name: s.name, qualifiedName: s.qualifiedName, doc: s.doc || null }, body);
  }

  if (chunked.length === 0) {
    const name = file.path.split('/').pop() ?? file.path;
    for (let start = 0; start < lines.length; start += windowLines) {
      const body = lines.slice(start, start + windowLines).map((text, i) => ({ n: start + i, text }));
      emit({ symbolId: null, kind: 'block', name, qualifiedName: null, doc: null }, body);
    }
  }
  return drafts;
}

/**
 * A path glob as an anchored POSIX regular expression (Postgres `~`): `**`
 * spans directories (`**\/` also none), `*` stays within one segment, `?` is
 * one character; everything else is literal. A glob without `/` matches a
 * name in any directory (`*.ts`), one ending in `/` everything below it.
 */
export function globToRegex(glob: string): string {
  const g = glob.trim().replace(/^\.?\/+/, '');
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const ch = g[i] ?? '';
    if (ch === '*' && g[i + 1] === '*') {
      if (g[i + 2] === '/') {
        re += '(.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (ch === '*') {
      re += '[^/]*';
    } else if (ch === '?') {
      re += '[^/]';
    } else {
      re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  const anywhere = g.includes('/') ? '' : '(.*/)?';
  return `^${anywhere}${re}${g.endsWith('/') ? '.*' : ''}$`;
}
