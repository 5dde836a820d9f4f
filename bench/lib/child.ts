import { fork, type ChildProcess } from 'node:child_process';

/** Benchmark helpers running as child processes (the load generator, the fake embedder). */

export interface Child<T> {
  readonly process: ChildProcess;
  /** The child's first IPC message. */
  readonly ready: T;
  /** Resolves when the child has exited (with its exit code, or the signal that ended it). */
  readonly exited: Promise<number | NodeJS.Signals>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Forks a TypeScript module (tsx is inherited through execArgv) and waits for
 * its first IPC message, failing if it exits first or takes longer than
 * `timeoutMs`.
 */
export async function forkChild<T>(file: string, args: readonly string[], timeoutMs = 30_000): Promise<Child<T>> {
  const cp = fork(file, [...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    cp.once('exit', (code, signal) => resolve(signal ?? code ?? 0));
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (cp.exitCode === null && cp.signalCode === null) cp.kill(signal);
  };
  try {
    const ready = await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${file} did not start within ${timeoutMs} ms`)), timeoutMs);
      cp.once('message', (m) => {
        clearTimeout(timer);
        resolve(m as T);
      });
      cp.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      void exited.then((how) => {
        clearTimeout(timer);
        reject(new Error(`${file} exited (${how}) before it was ready`));
      });
    });
    return { process: cp, ready, exited, kill };
  } catch (e) {
    kill('SIGKILL');
    throw e;
  }
}
