import type { ChangedFile } from './code-graph.types.ts';

const HUNK = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

/** `a/src/x.ts` → `src/x.ts`; `/dev/null` → undefined; quoted names unquoted. */
function diffPath(raw: string): string | undefined {
  let p = raw.trim().split('\t')[0] ?? '';
  if (p.startsWith('"') && p.endsWith('"')) p = p.slice(1, -1).replace(/\\(.)/g, '$1');
  if (p === '/dev/null' || p === '') return undefined;
  return /^[ab]\//.test(p) ? p.slice(2) : p;
}

/**
 * The files a unified diff (`git diff`, `diff -u`) changes and, per file, the
 * lines of the *old* side it touches — the side the index holds. A removed
 * or replaced line counts as itself; an insertion counts as the line before
 * it (the first line when at the top), so code added inside a function body
 * lands in that function. A deleted file counts every line its hunks name.
 */
export function parseUnifiedDiff(diff: string): ChangedFile[] {
  const files: Array<{ path: string; lines: Set<number>; added: boolean }> = [];
  let current: { path: string; lines: Set<number>; added: boolean } | undefined;
  let oldPath: string | undefined;
  let oldLine = 0;
  let oldLeft = 0;
  let newLeft = 0;
  for (const line of diff.split(/\r?\n/)) {
    if (oldLeft > 0 || newLeft > 0) {
      const tag = line[0];
      if (tag === '-') {
        current?.lines.add(oldLine);
        oldLine += 1;
        oldLeft -= 1;
        continue;
      }
      if (tag === '+') {
        current?.lines.add(Math.max(oldLine - 1, 1));
        newLeft -= 1;
        continue;
      }
      if (tag === ' ' || line === '') {
        oldLine += 1;
        oldLeft -= 1;
        newLeft -= 1;
        continue;
      }
      if (tag === '\\') continue; // "\ No newline at end of file"
      oldLeft = 0;
      newLeft = 0;
    }
    if (line.startsWith('--- ')) {
      oldPath = diffPath(line.slice(4));
      continue;
    }
    if (line.startsWith('+++ ')) {
      const newPath = diffPath(line.slice(4));
      const p = oldPath ?? newPath;
      if (p !== undefined) {
        current = { path: p, lines: new Set(), added: oldPath === undefined };
        files.push(current);
      } else {
        current = undefined;
      }
      oldPath = undefined;
      continue;
    }
    const h = HUNK.exec(line);
    if (h !== null) {
      oldLine = Number(h[1]);
      oldLeft = h[2] === undefined ? 1 : Number(h[2]);
      newLeft = h[4] === undefined ? 1 : Number(h[4]);
      // `-l,0`: the hunk inserts after old line l.
      if (oldLeft === 0) oldLine += 1;
    }
  }
  const byPath = new Map<string, ChangedFile>();
  for (const f of files) {
    const prev = byPath.get(f.path);
    const lines = [...new Set([...(prev?.lines ?? []), ...f.lines])].sort((x, y) => x - y);
    byPath.set(f.path, { path: f.path, lines, added: f.added && (prev?.added ?? true) });
  }
  return [...byPath.values()];
}
