import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.ts';
import type { CodeLanguage, ParsedFile, ParserPool } from '../ports/code-parser.ts';

export interface ParserPoolOptions {
  /** Each thread's JS heap cap (V8 old generation), in MB: a file that needs more kills its thread, not the server. */
  readonly maxHeapMb: number;
}

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

  constructor(private readonly opts: ParserPoolOptions) {
    this.worker = new Worker(new URL('./parse.worker.js', import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: opts.maxHeapMb },
    });
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
      if (this.failed !== undefined) return;
      this.failed = e;
      markFailed(e);
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', (e: Error & { code?: string }) => fail(this.crashError(e)));
    this.worker.on('exit', (code) => fail(this.crashError(new Error(`parse worker exited (code ${code})`))));
  }

  /**
   * What the files in flight on a dead thread fail with: not retryable, since
   * the same files would kill the next thread too (and a server that runs
   * the job again after a restart would only meet them again).
   */
  private crashError(e: Error & { code?: string }): AppError {
    if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') {
      return new AppError(
        'PAYLOAD_TOO_LARGE',
        `A file of this repository needs more than the parser's memory limit (CODE_PARSE_WORKER_MAX_MB = ${this.opts.maxHeapMb} MB); the run was stopped`,
        { details: { maxHeapMb: this.opts.maxHeapMb }, cause: e, retryable: false },
      );
    }
    return new AppError('INTERNAL', 'A parse worker crashed while parsing this repository; the run was stopped', {
      cause: e,
      retryable: false,
    });
  }

  /** False once the thread died: the pool starts another in its place. */
  get alive(): boolean {
    return this.failed === undefined;
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
 * with the fewest files in flight. Each thread's heap is capped at
 * `maxHeapMb`: a file that needs more ends that thread (its files in flight
 * fail with a non-retryable PAYLOAD_TOO_LARGE) and the server goes on; a dead
 * thread is replaced at the next call.
 */
export function createParserPool(size: number, opts: ParserPoolOptions): ParserPool {
  let threads: ParseThread[] | undefined;
  const start = (): ParseThread[] => {
    threads ??= Array.from({ length: Math.max(1, size) }, () => new ParseThread(opts));
    // Replaced here rather than when it dies: the caller awaiting its files sees the failure first.
    for (let i = 0; i < threads.length; i++) if (!threads[i]?.alive) threads[i] = new ParseThread(opts);
    return threads;
  };
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
