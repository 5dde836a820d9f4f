import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnServer, type CliRun, type ServerProcess } from '../helpers/server-process.ts';
import { backend, createTestDatabase, type TestDatabase } from '../helpers/test-engram.ts';

describe(`engram CLI (${backend})`, () => {
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  let server: ServerProcess | undefined;

  const run = (args: string[], extra: Record<string, string> = {}): Promise<CliRun> =>
    runCli(args, { ...env, ...extra });

  beforeAll(async () => {
    db = await createTestDatabase();
    const { VITEST: _v, ...rest } = process.env;
    env = { ...rest, ...db.env, LOG_LEVEL: 'info', REEMBED_INTERVAL_MS: '0', PORT: '0' };
  });
  afterAll(async () => {
    server?.child.kill('SIGKILL');
    await db.drop();
  });

  it('prints help a new user can follow', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['serve', 'migrate', 'keys', 'memories', 'config']) expect(r.stdout).toContain(cmd);
    const mem = await run(['memories', '--help']);
    expect(mem.stdout).toMatch(/add.*\n.*search|search/s);
  });

  it('names every invalid variable and prints a redacted config', async () => {
    const bad = await run(['config'], { PORT: 'abc', EMBEDDER: 'magic' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('PORT');
    expect(bad.stderr).toContain('EMBEDDER');
    const ok = await run(['config'], { OPENAI_API_KEY: 'sk-very-secret' });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).store.kind).toBe(backend);
    expect(ok.stdout).not.toContain('sk-very-secret');
  });

  it('serves, talks to the running server, and refuses to migrate under it', async () => {
    server = await spawnServer(env);
    const { url } = server;
    const log = server.output();
    expect(log).toContain('created the org "default"');
    expect((await fetch(`${url}/health/ready`)).status).toBe(200);

    const added = await run([
      'memories',
      'add',
      'The on-call rotation changes every Monday',
      '--project',
      'ops',
      '--tag',
      'oncall',
    ]);
    expect(added.code, added.stderr).toBe(0);
    const id = (JSON.parse(added.stdout) as { id: string }).id;
    const found = await run(['memories', 'search', 'on-call rotation']);
    expect(found.code, found.stderr).toBe(0);
    expect(found.stdout).toContain(id);
    const got = await run(['memories', 'get', id]);
    expect(JSON.parse(got.stdout)).toMatchObject({ id, scope: { project: 'ops' }, tags: ['oncall'] });

    const key = await run(['keys', 'create', '--name', 'ci', '--scopes', 'memories:read', '--expires-in', '30d']);
    expect(key.code, key.stderr).toBe(0);
    expect(key.stdout).toMatch(/secret \(shown once\): egm_/);

    const remoteVerify = await run(['audit', 'verify']);
    expect(remoteVerify.code, remoteVerify.stderr).toBe(0);
    expect(remoteVerify.stdout).toMatch(/^ok\s+org \S+\s+\d+ entries/m);

    if (backend === 'pglite') {
      const orgsUnder = await run(['orgs', 'list']);
      expect(orgsUnder.code).toBe(1);
      expect(orgsUnder.stderr).toMatch(/STORE_LOCKED: orgs list needs the store itself/);
      const mig = await run(['migrate', 'status']);
      expect(mig.code).toBe(1);
      expect(mig.stderr).toMatch(/STORE_LOCKED: The server \(pid \d+\) is using/);
    }

    await server.stop();
    server = undefined;

    // With the server stopped, commands open the store themselves.
    const direct = await run(['memories', 'search', 'rotation', '--mode', 'lexical', '--json']);
    expect(direct.code, direct.stderr).toBe(0);
    expect((JSON.parse(direct.stdout) as { results: Array<{ memory: { id: string } }> }).results[0]?.memory.id).toBe(
      id,
    );
    const status = await run(['migrate', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/0001_tenancy\s+applied/);
    const verify = await run(['migrate', 'verify']);
    expect(verify.stdout).toContain('ok:');
    const del = await run(['memories', 'delete', id]);
    expect(del.stdout, del.stderr).toContain(`deleted ${id}`);
    const gone = await run(['memories', 'get', id]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('MEMORY_NOT_FOUND');

    const created = await run(['orgs', 'create', 'acme', '--region', 'eu-west']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/admin key \(shown once\): egm_/);
    expect((await run(['orgs', 'list'])).stdout).toMatch(/^acme\s+eu-west\s+[0-9a-f-]{36}$/m);
    expect((await run(['orgs', 'set-region', 'acme', 'us-east'])).stdout).toContain('acme now lives in us-east');
    const dup = await run(['orgs', 'create', 'acme']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain('CONFLICT');

    const quotas = await run(['orgs', 'quotas', 'acme', '--search', '90', '--write', 'default']);
    expect(quotas.code, quotas.stderr).toBe(0);
    expect((JSON.parse(quotas.stdout) as { quotas: unknown[] }).quotas).toEqual(
      expect.arrayContaining([
        { class: 'search', perMinute: 90, burst: expect.any(Number), source: 'org' },
        { class: 'write', perMinute: expect.any(Number), burst: expect.any(Number), source: 'default' },
      ]),
    );
    const badQuota = await run(['orgs', 'quotas', 'acme', '--read', 'lots']);
    expect(badQuota.code).toBe(1);
    expect(badQuota.stderr).toContain('VALIDATION_FAILED');

    const listed = await run(['audit', 'list', '--action', 'memory.delete']);
    expect(listed.code, listed.stderr).toBe(0);
    // Done directly on the store, the delete is audited with the operator as actor.
    expect((JSON.parse(listed.stdout) as { items: Array<{ resourceId: string; actorId: string }> }).items).toEqual([
      expect.objectContaining({ resourceId: id, actorId: expect.stringMatching(/^cli:/) }),
    ]);
    const verifyAll = await run(['audit', 'verify']);
    expect(verifyAll.code, verifyAll.stdout).toBe(0);
    expect(verifyAll.stdout).toMatch(/^ok\s+org default\s+\d+ entries/m);
    // About twenty CLI processes, each starting Node and opening the store: minutes on a busy 2-core machine.
  }, 240_000);
});
