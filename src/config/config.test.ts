import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { loadConfig, redactedSummary, type Env } from './config.ts';

/** Runs loadConfig(env), expecting it to throw; returns the AppError it threw. */
function configError(env: Env): AppError {
  let thrown: unknown;
  try {
    loadConfig(env);
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(AppError);
  const error = thrown as AppError;
  expect(error.code).toBe('CONFIG_INVALID');
  return error;
}

describe(loadConfig.name, () => {
  let tmp: string;
  let dataDir: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'engram-config-'));
    dataDir = path.join(tmp, 'data');
  });

  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  describe('defaults', () => {
    it('returns port 8420, host 127.0.0.1, a pglite store and the builtin embedder for an empty environment', () => {
      const config = loadConfig({});
      expect(config.port).toBe(8420);
      expect(config.host).toBe('127.0.0.1');
      expect(config.serverUrl).toBe('http://127.0.0.1:8420');
      expect(config.serverUrlExplicit).toBe(false);
      expect(config.dataDir).toBe(path.resolve('.engram'));
      expect(config.store).toEqual({ kind: 'pglite', dataDir: path.join(path.resolve('.engram'), 'pgdata') });
      expect(config.valkeyUrl).toBeUndefined();
      expect(config.embedding.provider).toBe('builtin');
      expect(config.embedding.model).toBe('engram-hash-v1');
      expect(config.embedding.dimension).toBe(384);
    });

    it('returns a pglite store under <ENGRAM_DATA_DIR>/pgdata', () => {
      const config = loadConfig({ ENGRAM_DATA_DIR: dataDir });
      expect(config.dataDir).toBe(dataDir);
      expect(config.store).toEqual({ kind: 'pglite', dataDir: path.join(dataDir, 'pgdata') });
    });

    it('returns empty variables as if they were unset', () => {
      const config = loadConfig({ PORT: '', HOST: '', EMBEDDER: '', DATABASE_URL: '', ENGRAM_DATA_DIR: dataDir });
      expect(config.port).toBe(8420);
      expect(config.host).toBe('127.0.0.1');
      expect(config.embedding.provider).toBe('builtin');
      expect(config.store.kind).toBe('pglite');
    });
  });

  describe('store', () => {
    it('returns a postgres store when DATABASE_URL is set, with the admin URL defaulting to it', () => {
      const url = 'postgres://engram:pw@db.example:5432/engram';
      const config = loadConfig({ DATABASE_URL: url, ENGRAM_DATA_DIR: dataDir });
      expect(config.store).toEqual({
        kind: 'postgres',
        url,
        adminUrl: url,
        systemUrl: url,
        poolMax: 10,
        systemPoolMax: 3,
        idleTimeoutMs: 30_000,
        connectTimeoutMs: 5_000,
        statementTimeoutMs: 30_000,
      });
    });

    it('returns the separate admin URL when DATABASE_ADMIN_URL is set', () => {
      const config = loadConfig({
        DATABASE_URL: 'postgresql://app@h/db',
        DATABASE_ADMIN_URL: 'postgresql://admin@h/db',
        ENGRAM_DATA_DIR: dataDir,
      });
      expect(config.store.kind === 'postgres' && config.store.adminUrl).toBe('postgresql://admin@h/db');
    });

    it('returns the separate system login and pool size when set', () => {
      const config = loadConfig({
        DATABASE_URL: 'postgresql://app@h/db',
        DATABASE_SYSTEM_URL: 'postgresql://system@h/db',
        DATABASE_SYSTEM_POOL_MAX: '5',
        ENGRAM_DATA_DIR: dataDir,
      });
      expect(config.store).toMatchObject({ systemUrl: 'postgresql://system@h/db', systemPoolMax: 5 });
    });
  });

  describe('tenant fairness limits', () => {
    it('caps one org’s running jobs one below the instance’s concurrency on PostgreSQL, and at least one', () => {
      const pg = { ENGRAM_DATA_DIR: dataDir, DATABASE_URL: 'postgres://u@h/db' };
      expect(loadConfig(pg).jobs.maxRunningPerOrg).toBe(1);
      expect(loadConfig({ ...pg, JOBS_CONCURRENCY: '8' }).jobs.maxRunningPerOrg).toBe(7);
      expect(loadConfig({ ...pg, JOBS_CONCURRENCY: '1' }).jobs.maxRunningPerOrg).toBe(1);
    });

    it('leaves the embedded store uncapped unless told (one org; an index run must not hold up its embeddings)', () => {
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir }).jobs.maxRunningPerOrg).toBeUndefined();
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir, JOBS_MAX_RUNNING_PER_ORG: '1' }).jobs.maxRunningPerOrg).toBe(1);
    });

    it('takes JOBS_MAX_RUNNING_PER_ORG as given, 0 for no cap', () => {
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir, JOBS_MAX_RUNNING_PER_ORG: '5' }).jobs.maxRunningPerOrg).toBe(5);
      expect(
        loadConfig({ ENGRAM_DATA_DIR: dataDir, JOBS_MAX_RUNNING_PER_ORG: '0' }).jobs.maxRunningPerOrg,
      ).toBeUndefined();
      expect(configError({ JOBS_MAX_RUNNING_PER_ORG: '-1' }).message).toContain('JOBS_MAX_RUNNING_PER_ORG');
    });

    it('lets an org register 100 repositories unless CODE_MAX_REPOS_PER_ORG says otherwise', () => {
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir }).code.maxReposPerOrg).toBe(100);
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir, CODE_MAX_REPOS_PER_ORG: '3' }).code.maxReposPerOrg).toBe(3);
      expect(configError({ CODE_MAX_REPOS_PER_ORG: '0' }).message).toContain('CODE_MAX_REPOS_PER_ORG');
    });

    it('caps an org at 2 GiB of indexed source unless CODE_MAX_ORG_BYTES says otherwise', () => {
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir }).code.maxOrgBytes).toBe(2_147_483_648);
      expect(loadConfig({ ENGRAM_DATA_DIR: dataDir, CODE_MAX_ORG_BYTES: '1000' }).code.maxOrgBytes).toBe(1000);
      expect(configError({ CODE_MAX_ORG_BYTES: '0' }).message).toContain('CODE_MAX_ORG_BYTES');
    });
  });

  describe('validation', () => {
    it('throws CONFIG_INVALID naming every invalid variable at once', () => {
      const error = configError({ PORT: 'abc', EMBEDDER: 'nope', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
      for (const name of ['PORT', 'EMBEDDER', 'DATABASE_URL', 'LOG_LEVEL']) {
        expect(error.message).toContain(name);
      }
      const problems = (error.details as { problems: string[] }).problems;
      expect(problems).toHaveLength(4);
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['DATABASE_URL', 'EMBEDDER', 'LOG_LEVEL', 'PORT']);
    });

    it('throws CONFIG_INVALID for a port out of range', () => {
      expect(configError({ PORT: '70000' }).message).toContain('PORT');
    });

    it('throws CONFIG_INVALID when EMBEDDER=openai has neither an API key nor a custom base URL', () => {
      expect(configError({ EMBEDDER: 'openai' }).message).toContain('OPENAI_API_KEY');
    });

    it('throws CONFIG_INVALID for DATABASE_ADMIN_URL without DATABASE_URL', () => {
      expect(configError({ DATABASE_ADMIN_URL: 'postgres://admin@h/db' }).message).toContain('DATABASE_ADMIN_URL');
    });
  });

  describe('_FILE secrets', () => {
    it('reads DATABASE_URL from the file named by DATABASE_URL_FILE, trimming the trailing newline', async () => {
      const file = path.join(tmp, 'database-url');
      await writeFile(file, 'postgres://u:from-file@h/db\n');
      const config = loadConfig({ DATABASE_URL_FILE: file, ENGRAM_DATA_DIR: dataDir });
      expect(config.store.kind).toBe('postgres');
      expect(config.store.kind === 'postgres' && config.store.url).toBe('postgres://u:from-file@h/db');
    });

    it('reads OPENAI_API_KEY from OPENAI_API_KEY_FILE', async () => {
      const file = path.join(tmp, 'openai-key');
      await writeFile(file, 'sk-from-file\n');
      const config = loadConfig({ EMBEDDER: 'openai', OPENAI_API_KEY_FILE: file, ENGRAM_DATA_DIR: dataDir });
      expect(config.embedding.openaiApiKey).toBe('sk-from-file');
    });

    it('throws CONFIG_INVALID when both a variable and its _FILE are set', async () => {
      const file = path.join(tmp, 'database-url-both');
      await writeFile(file, 'postgres://u:p@h/db');
      const error = configError({ DATABASE_URL: 'postgres://u:p@h/db', DATABASE_URL_FILE: file });
      expect(error.message).toContain('DATABASE_URL_FILE');
      expect(error.message).toContain('not both');
    });

    it('throws CONFIG_INVALID naming the _FILE variable and path when the file cannot be read', () => {
      const missing = path.join(tmp, 'does-not-exist');
      const error = configError({ DATABASE_URL_FILE: missing });
      expect(error.message).toContain('DATABASE_URL_FILE');
      expect(error.message).toContain(missing);
    });
  });

  describe('immutability', () => {
    it('returns a deeply frozen config', () => {
      const config = loadConfig({ DATABASE_URL: 'postgres://u@h/db', ENGRAM_DATA_DIR: dataDir });
      expect(Object.isFrozen(config)).toBe(true);
      expect(Object.isFrozen(config.store)).toBe(true);
      expect(Object.isFrozen(config.embedding)).toBe(true);
      expect(Object.isFrozen(config.limits)).toBe(true);
      expect(() => {
        (config as { port: number }).port = 1;
      }).toThrow(TypeError);
      expect(config.port).toBe(8420);
    });
  });
});

describe(redactedSummary.name, () => {
  it('returns a summary without the DATABASE_URL password, the Valkey password or the OpenAI API key', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://u:s3cret@h/db',
      DATABASE_ADMIN_URL: 'postgres://admin:adm1nSecret@h/db',
      VALKEY_URL: 'redis://:vaLkeyPass@cache:6379',
      EMBEDDER: 'openai',
      OPENAI_API_KEY: 'sk-test-0123456789',
      ENGRAM_DATA_DIR: path.join(tmpdir(), 'engram-config-summary'),
    });
    const text = JSON.stringify(redactedSummary(config));
    for (const secret of ['s3cret', 'adm1nSecret', 'vaLkeyPass', 'sk-test-0123456789']) {
      expect(text).not.toContain(secret);
    }
    // Still useful: host, user and database stay visible.
    expect(text).toContain('postgres://u:***@h/db');
    expect(text).toContain('"apiKey":"***"');
  });
});

describe('JWT verification and PUBLIC_URL', () => {
  const jwt = {
    AUTH_HS256_SECRET: 'x'.repeat(32),
    AUTH_ALGORITHMS: 'HS256',
    AUTH_ISSUER: 'https://idp.example',
    AUTH_AUDIENCE: 'https://engram.example',
  };

  it('refuses to start without PUBLIC_URL, since DPoP htu would be checked against the Host header', () => {
    expect(configError(jwt).message).toMatch(/PUBLIC_URL: required when JWT verification is configured/);
    expect(loadConfig({ ...jwt, PUBLIC_URL: 'https://engram.example' }).auth.publicUrl).toBe('https://engram.example');
    // The explicit opt-out, for a server only ever reached directly.
    expect(loadConfig({ ...jwt, DPOP_HTU_FROM_HOST: 'true' }).auth.publicUrl).toBeUndefined();
  });
});
