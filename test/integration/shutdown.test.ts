import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnServer, type ServerProcess } from '../helpers/server-process.ts';
import { backend, createTestDatabase, type TestDatabase } from '../helpers/test-engram.ts';

/**
 * Graceful shutdown of a real `engram serve` process: on SIGTERM readiness
 * flips to 503 while requests are still served (SHUTDOWN_DELAY_MS), then the
 * listener closes, a request already in flight still completes and is
 * stored, and the process exits 0.
 */
describe(`graceful shutdown (${backend})`, () => {
  let db: TestDatabase;
  let server: ServerProcess | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    server?.child.kill('SIGKILL');
    await db?.drop();
  });

  it('flips readiness first, finishes the in-flight write, then exits 0', async () => {
    const env = {
      ...process.env,
      ...db.env,
      LOG_LEVEL: 'info',
      REEMBED_INTERVAL_MS: '0',
      PORT: '0',
      SHUTDOWN_DELAY_MS: '1500',
    };
    server = await spawnServer(env);
    const { url } = server;
    const key = /admin API key \(shown once\):\s+(egm_\S+)/.exec(server.output())?.[1];
    expect(key).toBeDefined();
    expect((await fetch(`${url}/health/ready`)).status).toBe(200);

    // A write whose body is only half sent when SIGTERM arrives.
    const body = JSON.stringify({ content: 'written across a shutdown' });
    const target = new URL('/v1/memories', url);
    const req = http.request(target, {
      method: 'POST',
      agent: false,
      headers: {
        authorization: `Bearer ${String(key)}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    const response = new Promise<{ status: number; json: { id: string } }>((resolve, reject) => {
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as { id: string } }));
      });
      req.on('error', reject);
    });
    req.write(body.slice(0, 10));
    await new Promise((r) => setTimeout(r, 200));

    const exited = new Promise<number | null>((resolve) => server?.child.once('close', resolve));
    server.child.kill('SIGTERM');

    // Readiness flips while the listener still answers.
    const ready = await pollUntil(async () => {
      const res = await fetch(`${url}/health/ready`);
      return res.status === 503 ? ((await res.json()) as { checks: Record<string, unknown> }) : undefined;
    });
    expect(ready.checks).toHaveProperty('shutdown');
    expect((await fetch(`${url}/health/live`)).status).toBe(200);

    // Then the listener closes: new connections are refused…
    await pollUntil(() =>
      fetch(`${url}/health/live`).then(
        () => undefined,
        () => true,
      ),
    );
    // …while the write that was already in flight completes.
    req.end(body.slice(10));
    const done = await response;
    expect(done.status).toBe(201);
    expect(await exited).toBe(0);
    server = undefined;

    // Stored: the CLI, now opening the store itself, finds it.
    const got = await runCli(['memories', 'get', done.json.id], env);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toContain('written across a shutdown');
  });
});

async function pollUntil<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
