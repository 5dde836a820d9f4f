import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnServer, type CliRun, type ServerProcess } from '../helpers/server-process.ts';
import { backend, createTestDatabase, type TestDatabase } from '../helpers/test-engram.ts';

/** `engram import <file.jsonl>`: batches through the app, bad lines reported by number, resumable. */
describe(`engram import (${backend})`, () => {
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  let server: ServerProcess | undefined;
  let dir: string;
  let file: string;

  const run = (args: string[], extra: Record<string, string> = {}): Promise<CliRun> =>
    runCli(args, { ...env, ...extra });
  const viaServer = () => ({ ENGRAM_URL: server?.url ?? '' });
  const summary = (r: CliRun) => JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;

  const LINES = [
    JSON.stringify({ content: 'Imported kiwi fact one', scope: { project: 'imp' } }),
    '',
    '{not json',
    JSON.stringify({ content: 'kiwi', bogus: true }),
    JSON.stringify({ content: 'Imported kiwi fact five', tags: ['fruit'] }),
    JSON.stringify({ content: '   ' }),
    JSON.stringify({ content: 'Imported kiwi fact seven', validFrom: '2026-01-01T00:00:00Z' }),
  ];

  beforeAll(async () => {
    db = await createTestDatabase();
    const { VITEST: _v, ...rest } = process.env;
    env = { ...rest, ...db.env, LOG_LEVEL: 'info', REEMBED_INTERVAL_MS: '0', PORT: '0' };
    dir = mkdtempSync(path.join(tmpdir(), 'engram-import-'));
    file = path.join(dir, 'history.jsonl');
    writeFileSync(file, `${LINES.join('\n')}\n`);
    server = await spawnServer(env);
  });
  afterAll(async () => {
    server?.child.kill('SIGKILL');
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('imports in batches, reports each bad line by number, and exits 1 at the end', async () => {
    const r = await run(['import', file, '--batch-size', '2'], viaServer());
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/line 3: not valid JSON/);
    expect(r.stderr).toMatch(/line 4: VALIDATION_FAILED: .*bogus/);
    // Valid JSON and a valid body, refused by the service: reported from the batch result.
    expect(r.stderr).toMatch(/line 6: VALIDATION_FAILED: content must not be empty/);
    expect(r.stderr).toMatch(/7\/7 lines 100%/);
    expect(summary(r)).toMatchObject({ lines: 7, fromLine: 1, created: 3, existing: 0, failed: 3, empty: 1 });
    expect(JSON.parse(readFileSync(`${file}.progress`, 'utf8'))).toMatchObject({ version: 1, line: 7 });

    const found = await run(['memories', 'search', 'kiwi fact', '--mode', 'lexical', '--json'], viaServer());
    expect(found.code, found.stderr).toBe(0);
    const contents = (JSON.parse(found.stdout) as { results: Array<{ memory: { content: string } }> }).results.map(
      (h) => h.memory.content,
    );
    expect(contents.sort()).toEqual(['Imported kiwi fact five', 'Imported kiwi fact one', 'Imported kiwi fact seven']);

    const audit = await run(['audit', 'list', '--action', 'memory.import'], viaServer());
    const entries = (JSON.parse(audit.stdout) as { items: Array<{ details: Record<string, unknown> }> }).items;
    expect(entries.map((e) => e.details)).toEqual(
      expect.arrayContaining([expect.objectContaining({ items: 2, created: 2 })]),
    );
  });

  it('continues after the last committed line on a rerun, so appended lines are all that is sent', async () => {
    const again = await run(['import', file], viaServer());
    expect(again.code, again.stderr).toBe(0);
    expect(summary(again)).toMatchObject({ fromLine: 8, created: 0, existing: 0, failed: 0 });

    appendFileSync(file, `${LINES[0] ?? ''}\n${JSON.stringify({ content: 'Imported kiwi fact nine' })}\n`);
    const more = await run(['import', file], viaServer());
    expect(more.code, more.stderr).toBe(0);
    expect(summary(more)).toMatchObject({ lines: 9, fromLine: 8, created: 1, existing: 1, failed: 0 });
  });

  it('resumes after a crash from the progress file, and re-sent lines are not stored twice', async () => {
    // As if the process died after committing the batch that ended on line 3.
    const head = readFileSync(file, 'utf8').split('\n').slice(0, 3);
    const sha256 = createHash('sha256')
      .update(head.map((l) => `${l}\n`).join(''))
      .digest('hex');
    writeFileSync(`${file}.progress`, JSON.stringify({ version: 1, line: 3, sha256, updatedAt: new Date() }));
    const r = await run(['import', file], viaServer());
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/line 3:/);
    expect(r.stderr).toMatch(/line 4:/);
    expect(summary(r)).toMatchObject({ fromLine: 4, created: 0, existing: 4, failed: 2 });
  });

  it('refuses to resume when the lines already imported changed, until told where to start', async () => {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines[0] = JSON.stringify({ content: 'Imported kiwi fact one, corrected', scope: { project: 'imp' } });
    writeFileSync(file, lines.join('\n'));
    const refused = await run(['import', file], viaServer());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFLICT: .*changed in its first 9 lines.*--from-line 1/);

    const restarted = await run(['import', file, '--from-line', '1'], viaServer());
    expect(summary(restarted)).toMatchObject({ fromLine: 1, created: 1, existing: 4, failed: 3 });
  });

  it('imports on the store directly when no server is running', async () => {
    await server?.stop();
    server = undefined;
    const other = path.join(dir, 'direct.jsonl');
    writeFileSync(
      other,
      [
        JSON.stringify({ content: 'Directly imported walrus note' }),
        JSON.stringify({ content: 'Imported kiwi fact one', scope: { project: 'imp' } }),
      ].join('\n'),
    );
    const r = await run(['import', other]);
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r)).toMatchObject({ lines: 2, created: 1, existing: 1, failed: 0 });
    expect(existsSync(`${other}.progress`)).toBe(true);
    const listed = await run(['memories', 'search', 'walrus', '--mode', 'lexical', '--json']);
    expect(listed.stdout).toContain('Directly imported walrus note');
  });

  it('keeps to a small import quota: smaller batches after a 413, waits out each 429', async () => {
    await server?.stop();
    // A burst of 10 items that refills at 10/s: 25 lines cannot go in one request, nor all at once.
    server = await spawnServer({
      ...env,
      RATE_LIMIT_IMPORT_PER_MIN: '600',
      RATE_LIMIT_BURST_SECONDS: '1',
    });
    const paced = path.join(dir, 'paced.jsonl');
    writeFileSync(
      paced,
      Array.from({ length: 25 }, (_, i) => JSON.stringify({ content: `Paced import note ${i}` })).join('\n'),
    );
    const r = await run(['import', paced], viaServer());
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r)).toMatchObject({ lines: 25, created: 25, failed: 0 });
    await server.stop();
    server = undefined;
  });
});
