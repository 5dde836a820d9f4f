import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngram } from '../../src/main.ts';
import {
  backend,
  createTestDatabase,
  createTestEngram,
  testConfig,
  type TestDatabase,
  type TestEngram,
} from '../helpers/test-engram.ts';

const BIN = fileURLToPath(new URL('../../bin/engram.js', import.meta.url));

/** `engram mcp` as a local agent launches it: a child process speaking MCP on stdio. */
async function spawnMcp(env: Record<string, string>): Promise<Client> {
  const { VITEST: _v, ...rest } = process.env;
  const client = new Client({ name: 'stdio-test', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [BIN, 'mcp'],
      env: { ...(rest as Record<string, string>), LOG_LEVEL: 'warn', REEMBED_INTERVAL_MS: '0', ...env },
      stderr: 'pipe',
    }),
  );
  return client;
}

const text = (r: unknown): string => (r as { content: Array<{ text: string }> }).content[0]?.text ?? '';

describe(`engram mcp over stdio (${backend})`, () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  let readerKey: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    env = { ...db.env };
    // Bootstrap the store as `npm start` would, then close it: `engram mcp` opens it itself.
    const engram = await openEngram(testConfig(env), { log: pino({ level: 'silent' }) });
    const boot = await engram.apiKeys.bootstrap('local');
    env.ENGRAM_API_KEY = boot.adminKey ?? '';
    readerKey = (await engram.apiKeys.create(boot.org.id, { name: 'reader', scopes: ['memories:read'] })).secret;
    await engram.close();
  });
  afterAll(async () => db.drop());

  it('serves the tools on the store directly, with the key’s scopes', async () => {
    const client = await spawnMcp(env);
    try {
      const r = await client.callTool({ name: 'remember', arguments: { content: 'stdio agents can remember' } });
      expect(text(r)).toMatch(/^Remembered: /);
      const found = await client.callTool({ name: 'recall', arguments: { query: 'stdio remember' } });
      expect(text(found)).toContain('stdio agents can remember');
    } finally {
      await client.close();
    }
    const reader = await spawnMcp({ ...env, ENGRAM_API_KEY: readerKey });
    try {
      const names = (await reader.listTools()).tools.map((t) => t.name);
      expect(names).toContain('recall');
      expect(names).not.toContain('remember');
    } finally {
      await reader.close();
    }
  });

  it('refuses to start with a bad key, saying why on stderr', async () => {
    await expect(
      spawnMcp({ ...env, ENGRAM_API_KEY: 'egm_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' }),
    ).rejects.toThrow();
  });
});

describe(`engram mcp relaying to a running server (${backend})`, () => {
  let t: TestEngram;
  let url: string;

  beforeAll(async () => {
    t = await createTestEngram();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => t.close());

  it('bridges stdio to the server’s /mcp, which authenticates and audits as usual', async () => {
    const org = await t.makeOrg();
    const client = await spawnMcp({ ENGRAM_URL: url, ENGRAM_API_KEY: org.key, ENGRAM_DATA_DIR: t.config.dataDir });
    try {
      const r = await client.callTool({ name: 'remember', arguments: { content: 'bridged through HTTP' } });
      expect(text(r)).toMatch(/^Remembered: /);
      const audit = await t.app.inject({ method: 'GET', url: '/v1/audit?action=mcp.remember', headers: org.auth });
      expect(audit.json().items[0]).toMatchObject({ outcome: 'success', details: { transport: 'streamable-http' } });
    } finally {
      await client.close();
    }
  });
});
