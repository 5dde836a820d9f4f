import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnServer, type CliRun, type ServerProcess } from '../helpers/server-process.ts';
import { backend, createTestDatabase, type TestDatabase } from '../helpers/test-engram.ts';

describe(`engram repos CLI (${backend})`, () => {
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  let roots: string;
  let repoDir: string;
  let server: ServerProcess | undefined;

  const run = (args: string[]): Promise<CliRun> => runCli(args, env);

  beforeAll(async () => {
    db = await createTestDatabase();
    roots = realpathSync(mkdtempSync(path.join(tmpdir(), 'engram-code-cli-')));
    // The server's bootstrap org is `default`: its directory under the root.
    repoDir = path.join(roots, 'default', 'tools');
    mkdirSync(path.join(repoDir, 'src'), { recursive: true });
    writeFileSync(
      path.join(repoDir, 'src/a.ts'),
      "import { b } from './b';\nexport function a() {\n  return b();\n}\n",
    );
    writeFileSync(path.join(repoDir, 'src/b.ts'), 'export function b() {\n  return 1;\n}\n');
    execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repoDir });
    const { VITEST: _v, ...rest } = process.env;
    env = {
      ...rest,
      ...db.env,
      LOG_LEVEL: 'info',
      REEMBED_INTERVAL_MS: '0',
      PORT: '0',
      JOBS_POLL_MS: '100',
      CODE_ALLOWED_ROOTS: roots,
    };
  });
  afterAll(async () => {
    await server?.stop();
    await db.drop();
    rmSync(roots, { recursive: true, force: true });
  });

  it('adds, waits for, lists, re-indexes and removes a repository through the server', async () => {
    server = await spawnServer(env);
    const added = await run(['repos', 'add', repoDir, '--name', 'tools', '--wait']);
    expect(added.code, added.stderr).toBe(0);
    const id = /registered (\S+) \(tools\)/.exec(added.stdout)?.[1] ?? '';
    expect(id).not.toBe('');
    expect(added.stdout).toMatch(/indexed\s+tools/);
    expect(added.stderr).toMatch(/2\/2 files \(2 parsed/);

    const list = await run(['repos', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const items = JSON.parse(list.stdout) as Array<{ id: string; status: string }>;
    expect(items.map((r) => [r.id, r.status])).toEqual([[id, 'indexed']]);

    const again = await run(['repos', 'index', id, '--wait']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/0 parsed, 2 unchanged/);

    const bad = await run(['repos', 'add', '/etc']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/PATH_NOT_ALLOWED/);

    const removed = await run(['repos', 'remove', id]);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await run(['repos', 'list'])).stdout).toContain('no repositories');
  });
});
