import { Worker } from 'node:worker_threads';
import type { CodeLanguage, ParsedFile, ParserPool } from '../ports/code-parser.ts';

type Reply = { id: number; ok: true; parsed: ParsedFile } | { id: number; ok: false; error: string } | { ready: true };

interface Pending {
  readonly resolve: (p: ParsedFile) => void;
  readonly reject: (e: Error) => void;
}

/** One worker thread running parse.worker.js, with its requests in flight. */
class ParseThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | undefined;
  readonly ready: Promise<void>;

  constructor() {
    this.worker = new Worker(new URL('./parse.worker.js', import.meta.url));
    this.worker.unref();
    let markReady: () => void = () => undefined;
    let markFailed: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      markFailed = reject;
    });
    // A start-up failure is reported to whoever awaits `ready` or a parse; never as an unhandled rejection.
    this.ready.catch(() => undefined);
    this.worker.on('message', (m: Reply) => {
      if ('ready' in m) return markReady();
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.parsed);
      else p.reject(new Error(m.error));
    });
    const fail = (e: Error) => {
      this.failed = e;
      markFailed(e);
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`parse worker exited (code ${code})`)));
  }

  get load(): number {
    return this.pending.size;
  }

  async parse(language: CodeLanguage, source: string): Promise<ParsedFile> {
    if (this.failed !== undefined) throw this.failed;
    const id = this.nextId++;
    const result = new Promise<ParsedFile>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.worker.postMessage({ id, language, source });
    return result;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

/**
 * Parses on `size` worker threads (each with its own tree-sitter and
 * grammars, about 40 MB), started on first use; each call goes to the thread
 * with the fewest files in flight.
 */
export function createParserPool(size: number): ParserPool {
  let threads: ParseThread[] | undefined;
  const start = (): ParseThread[] => (threads ??= Array.from({ length: Math.max(1, size) }, () => new ParseThread()));
  return {
    warm() {
      start();
    },
    async parse(language, source) {
      const pool = start();
      const thread = pool.reduce((a, b) => (b.load < a.load ? b : a));
      await thread.ready;
      return thread.parse(language, source);
    },
    async close() {
      const running = threads ?? [];
      threads = undefined;
      await Promise.all(running.map((t) => t.close()));
    },
  };
}
