import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
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

/**
 * `engram mcp` on a transport of our own that keeps every byte the process
 * writes, so a test can check that stdout carried nothing but MCP.
 */
function recordedMcp(env: Record<string, string>): { transport: Transport; stdout(): string; stderr(): string } {
  const { VITEST: _v, ENGRAM_API_KEY: _k, ENGRAM_API_KEY_FILE: _f, ...rest } = process.env;
  const child = spawn(process.execPath, [BIN, 'mcp'], {
    env: { ...(rest as Record<string, string>), LOG_LEVEL: 'warn', REEMBED_INTERVAL_MS: '0', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const buffer = new ReadBuffer();
  const transport: Transport = {
    start: () => {
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString('utf8');
        buffer.append(c);
        for (;;) {
          let message: JSONRPCMessage | null;
          try {
            message = buffer.readMessage();
          } catch (e) {
            transport.onerror?.(e as Error);
            continue;
          }
          if (message === null) break;
          transport.onmessage?.(message);
        }
      });
      void exited.then(() => transport.onclose?.());
      return Promise.resolve();
    },
    send: async (message) => {
      await new Promise<void>((resolve, reject) =>
        child.stdin.write(serializeMessage(message), (e) => (e == null ? resolve() : reject(e))),
      );
    },
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
  return { transport, stdout: () => stdout, stderr: () => stderr };
}

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

describe(`engram mcp on a fresh store (${backend})`, () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db.drop());

  it('sets the store, the org "default" and its admin key up as `engram serve` does, with only MCP on stdout', async () => {
    const run = recordedMcp(db.env);
    const client = new Client({ name: 'first-run', version: '1.0.0' });
    const transportErrors: Error[] = [];
    client.onerror = (e) => transportErrors.push(e);
    try {
      await client.connect(run.transport);
      const created = await client.callTool({
        name: 'create_entities',
        arguments: { entities: [{ name: 'FirstRun', entityType: 'test', observations: ['works on a fresh store'] }] },
      });
      expect(created.isError).not.toBe(true);
      const found = await client.callTool({ name: 'search_nodes', arguments: { query: 'fresh store' } });
      expect(JSON.parse(text(found))).toMatchObject({ entities: [{ name: 'FirstRun' }] });
    } finally {
      await client.close();
    }

    const keyFile = path.join(db.env.ENGRAM_DATA_DIR ?? '', 'admin.key');
    const key = readFileSync(keyFile, 'utf8').trim();
    expect(key).toMatch(/^egm_/);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(transportErrors).toEqual([]);
    const lines = run
      .stdout()
      .split('\n')
      .filter((l) => l !== '');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ jsonrpc: '2.0' });
    // Where the key is goes to stderr; the key itself nowhere.
    expect(run.stderr()).toContain(keyFile);
    expect(run.stderr()).not.toContain(key);
    expect(run.stdout()).not.toContain(key);

    // The next start uses that key and org.
    const again = await spawnMcp(db.env);
    try {
      const found = await again.callTool({ name: 'open_nodes', arguments: { names: ['FirstRun'] } });
      expect(JSON.parse(text(found))).toMatchObject({ entities: [{ name: 'FirstRun' }] });
    } finally {
      await again.close();
    }
    expect(readFileSync(keyFile, 'utf8').trim()).toBe(key);
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
