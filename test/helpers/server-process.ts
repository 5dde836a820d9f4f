import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/engram.js', import.meta.url));

/** An `engram serve` child process and the URL it announced. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then waits for the exit code (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Starts `engram serve` with exactly `env` (VITEST removed so the child
 * behaves like a user's process) and resolves once its "listening" log line
 * names the URL; rejects with everything it printed if it exits or stays
 * silent for `timeoutMs`. Needs LOG_LEVEL info or lower.
 */
export function spawnServer(
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
  args: readonly string[] = [],
): Promise<ServerProcess> {
  const { VITEST: _v, ...rest } = env;
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: rest });
  let log = '';
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with code ${String(code)} before listening:\n${log}`));
    });
    const onData = (d: Buffer) => {
      log += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(log);
      if (m?.[1] === undefined) return;
      clearTimeout(timer);
      resolve({
        child,
        url: m[1],
        output: () => log,
        stop: async (graceMs = 15_000) => {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          const code = await exited;
          clearTimeout(killer);
          return code;
        },
      });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one `engram` CLI command with exactly `env` (VITEST removed) and collects its output. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  const { VITEST: _v, ...rest } = env;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: rest });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
