// @ts-check
/**
 * Parses source files with tree-sitter on a worker thread, so a large index
 * run uses more than one core and the server's event loop stays free.
 *
 * Plain JavaScript that registers tsx's loader itself: worker threads do not
 * inherit a TypeScript loader, and this file must run the same under tsx,
 * vitest and plain node.
 *
 * Protocol: → { id, language, source } ← { id, ok: true, parsed } | { id, ok: false, error }
 */
import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

if (parentPort === null) throw new Error('parse.worker.js must run in a worker thread');
const port = parentPort;
register();
const { createTreeSitterParser } = await import('./tree-sitter-parser.ts');
const parser = await createTreeSitterParser();

port.on(
  'message',
  (/** @type {{ id: number, language: import('../ports/code-parser.ts').CodeLanguage, source: string }} */ m) => {
    try {
      port.postMessage({ id: m.id, ok: true, parsed: parser.parse(m.language, m.source) });
    } catch (e) {
      port.postMessage({ id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  },
);
port.postMessage({ ready: true });
