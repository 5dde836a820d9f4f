import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../helpers/chaos-services.ts';
import { BIN } from '../helpers/server-process.ts';

/** Runs `engram serve` to its exit; resolves with the exit code and what it wrote to each stream. */
function serve(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { VITEST: _v, ...rest } = env;
  const child = spawn(process.execPath, [BIN, 'serve'], { env: rest });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe('startup without PostgreSQL', () => {
  it('waits with logged attempts, then exits 1 with one line naming PostgreSQL and what to check', async () => {
    const port = await freePort(); // nothing listens there
    const dataDir = mkdtempSync(path.join(tmpdir(), 'engram-startup-'));
    try {
      const r = await serve({
        ...process.env,
        ENGRAM_DATA_DIR: dataDir,
        DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres`,
        VALKEY_URL: '',
        STARTUP_TIMEOUT_MS: '1500',
        PORT: '0',
        LOG_LEVEL: 'info',
      });
      expect(r.code).toBe(1);
      const waits = r.stdout.split('\n').filter((l) => l.includes('waiting for PostgreSQL'));
      expect(waits.length).toBeGreaterThanOrEqual(2);
      expect(JSON.parse(waits[0] ?? '{}')).toMatchObject({
        level: 40,
        attempt: 1,
        msg: expect.stringMatching(
          new RegExp(
            `^waiting for PostgreSQL at 127\\.0\\.0\\.1:${port} \\(attempt 1, next in \\d+ ms\\): ECONNREFUSED$`,
          ),
        ),
      });
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(`^engram: UNAVAILABLE: PostgreSQL at 127\\.0\\.0\\.1:${port} is not available \\(ECONNREFUSED\\)`),
      );
      expect(lines[0]).toContain('DATABASE_URL');
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
