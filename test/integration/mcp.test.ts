import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';
import { dpopClient, jwtEnv, mintToken, signingKey, TEST_PUBLIC_URL, type SigningKey } from '../helpers/tokens.ts';

const MEMORY_TOOLS = [
  'forget',
  'get_memory',
  'list_memories',
  'memory_history',
  'recall',
  'remember',
  'remember_many',
  'update_memory',
];
const GRAPH_TOOLS = [
  'add_observations',
  'create_entities',
  'create_relations',
  'delete_entities',
  'delete_observations',
  'delete_relations',
  'open_nodes',
  'read_graph',
  'search_nodes',
];
/** Code search (code:read). */
const CODE_SEARCH_TOOLS = ['search_code'];
/** Code graph queries (code:read). */
const CODE_TOOLS = [
  'find_references',
  'find_symbol',
  'get_code',
  'get_definition',
  'get_dependencies',
  'get_dependents',
  'impact',
  'repo_map',
];
const READ_TOOLS = [
  'get_memory',
  'list_memories',
  'memory_history',
  'open_nodes',
  'read_graph',
  'recall',
  'search_nodes',
];

/** A connected SDK client over real Streamable HTTP. */
async function connect(url: string, headers: Record<string, string>, fetchImpl?: typeof fetch): Promise<Client> {
  const client = new Client({ name: 'engram-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL('/mcp', url), {
      requestInit: { headers },
      ...(fetchImpl === undefined ? {} : { fetch: fetchImpl }),
    }),
  );
  return client;
}

type Structured = Record<string, unknown>;
const structured = (r: unknown): Structured => (r as { structuredContent: Structured }).structuredContent;
const errorCode = (r: unknown): string | undefined =>
  (r as { isError?: boolean; _meta?: { 'engram/error'?: { code: string } } }).isError === true
    ? (r as { _meta: { 'engram/error': { code: string } } })._meta['engram/error'].code
    : undefined;

describe(`MCP over Streamable HTTP (${backend})`, () => {
  let t: TestEngram;
  let url: string;
  let org: TestOrg;
  let client: Client;

  beforeAll(async () => {
    t = await createTestEngram();
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    org = await t.makeOrg();
    client = await connect(url, org.auth);
  });
  afterAll(async () => {
    await client.close();
    await t.close();
  });

  it('lists every tool with title, annotations and input and output schemas', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((x) => x.name).sort()).toEqual(
      [...MEMORY_TOOLS, ...GRAPH_TOOLS, ...CODE_SEARCH_TOOLS, ...CODE_TOOLS].sort(),
    );
    const forget = tools.find((x) => x.name === 'forget');
    expect(forget?.annotations).toMatchObject({ destructiveHint: true, readOnlyHint: false, title: 'Forget' });
    const recall = tools.find((x) => x.name === 'recall');
    expect(recall?.annotations).toMatchObject({ readOnlyHint: true, idempotentHint: true });
    for (const tool of tools) {
      expect(tool.title, tool.name).toBeTruthy();
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type, tool.name).toBe('object');
    }
    expect(client.getInstructions()).toContain('recall');
  });

  it('remembers, recalls with explanations, updates, shows history, lists and forgets', async () => {
    const added = await client.callTool({
      name: 'remember',
      arguments: { content: 'The payments service retries webhooks three times', scope: { project: 'payments' } },
    });
    const memory = structured(added).memory as { id: string; uri: string };
    expect(memory.uri).toBe(`engram://memories/${memory.id}`);
    expect((added.content as Array<{ text: string }>)[0]?.text).toMatch(/^Remembered: /);

    const found = await client.callTool({
      name: 'recall',
      arguments: { query: 'webhook retries', scope: { project: 'payments' } },
    });
    const results = structured(found).results as Array<{ memory: { id: string }; why: string }>;
    expect(results[0]?.memory.id).toBe(memory.id);
    expect(results[0]?.why).toMatch(/lexical #1/);
    expect((found.content as Array<{ text: string }>)[0]?.text).toContain(memory.id);

    const updated = await client.callTool({
      name: 'update_memory',
      arguments: { id: memory.id, content: 'The payments service retries webhooks five times', expectedVersion: 1 },
    });
    expect((structured(updated).memory as { version: number }).version).toBe(2);
    const stale = await client.callTool({
      name: 'update_memory',
      arguments: { id: memory.id, content: 'x', expectedVersion: 1 },
    });
    expect(errorCode(stale)).toBe('CONFLICT');

    const history = await client.callTool({ name: 'memory_history', arguments: { id: memory.id } });
    expect((structured(history).versions as unknown[]).length).toBe(2);
    const listed = await client.callTool({ name: 'list_memories', arguments: { scope: { project: 'payments' } } });
    expect((structured(listed).items as Array<{ id: string }>).map((m) => m.id)).toEqual([memory.id]);

    const resource = await client.readResource({ uri: memory.uri });
    expect(JSON.parse((resource.contents[0] as { text: string }).text)).toMatchObject({ id: memory.id });
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toContain(memory.uri);

    await client.callTool({ name: 'forget', arguments: { id: memory.id } });
    const gone = await client.callTool({ name: 'get_memory', arguments: { id: memory.id } });
    expect(gone.isError).toBe(true);
    expect(errorCode(gone)).toBe('MEMORY_NOT_FOUND');
    await expect(client.readResource({ uri: memory.uri })).rejects.toThrow(/Resource not found/);
  });

  it('makes unknown tools and bad arguments protocol errors, and leaks nothing internal', async () => {
    await expect(client.callTool({ name: 'drop_database', arguments: {} })).rejects.toBeInstanceOf(McpError);
    await expect(client.callTool({ name: 'drop_database', arguments: {} })).rejects.toThrow(/Unknown tool/);
    await expect(client.callTool({ name: 'remember', arguments: { content: 42 } })).rejects.toThrow(
      /Invalid arguments for remember/,
    );
    await expect(client.callTool({ name: 'get_memory', arguments: { id: 'x', extra: 1 } })).rejects.toThrow(
      /Invalid arguments/,
    );
  });

  it('shows a read-only key only the read tools and refuses the others, audited', async () => {
    const reader = await connect(url, { authorization: `Bearer ${await org.keyWith(['memories:read'])}` });
    try {
      const { tools } = await reader.listTools();
      expect(tools.map((x) => x.name).sort()).toEqual([...READ_TOOLS].sort());
      const refused = await reader.callTool({ name: 'remember', arguments: { content: 'not allowed' } });
      expect(errorCode(refused)).toBe('FORBIDDEN');
      const audit = await t.app.inject({ method: 'GET', url: '/v1/audit?action=mcp.remember', headers: org.auth });
      expect(audit.json().items[0]).toMatchObject({ outcome: 'denied', details: { requiredScope: 'memories:write' } });
    } finally {
      await reader.close();
    }
    const keysOnly = await connect(url, { authorization: `Bearer ${await org.keyWith(['admin:keys'])}` });
    try {
      expect((await keysOnly.listTools()).tools).toEqual([]);
    } finally {
      await keysOnly.close();
    }
  });

  it('never crosses orgs: ids of another org are not found and recall does not see its memories', async () => {
    const other = await t.makeOrg();
    const theirs = await connect(url, other.auth);
    try {
      const secret = await theirs.callTool({
        name: 'remember',
        arguments: { content: 'Zanzibar launch codes are kept in vault seven' },
      });
      const id = (structured(secret).memory as { id: string }).id;
      for (const name of ['get_memory', 'memory_history', 'forget']) {
        const r = await client.callTool({ name, arguments: { id } });
        expect(errorCode(r), name).toBe('MEMORY_NOT_FOUND');
      }
      const upd = await client.callTool({ name: 'update_memory', arguments: { id, content: 'hijacked' } });
      expect(errorCode(upd)).toBe('MEMORY_NOT_FOUND');
      const recall = await client.callTool({ name: 'recall', arguments: { query: 'Zanzibar launch codes vault' } });
      expect(JSON.stringify(recall)).not.toContain('Zanzibar');
      await expect(client.readResource({ uri: `engram://memories/${id}` })).rejects.toThrow(/Resource not found/);
      const still = await theirs.callTool({ name: 'get_memory', arguments: { id } });
      expect((structured(still).memory as { content: string }).content).toContain('Zanzibar');
    } finally {
      await theirs.close();
    }
  });

  it('refuses a foreign Origin (DNS rebinding) and answers 401 with resource metadata without credentials', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const evil = await fetch(`${url}/mcp`, {
      method: 'POST',
      body,
      headers: { ...headers, ...org.auth, origin: 'http://evil.example' },
    });
    expect(evil.status).toBe(403);
    const anon = await fetch(`${url}/mcp`, { method: 'POST', body, headers });
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toMatch(
      /^Bearer realm="engram", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/,
    );
  });

  it('serves the legacy SSE transport, bound to the principal that opened it', async () => {
    const sse = new Client({ name: 'old-client', version: '0.1.0' });
    const transport = new SSEClientTransport(new URL('/sse', url), {
      requestInit: { headers: org.auth },
      eventSourceInit: {
        fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers ?? {}), ...org.auth } }),
      },
    });
    await sse.connect(transport);
    try {
      expect((await sse.listTools()).tools.length).toBe(
        MEMORY_TOOLS.length + GRAPH_TOOLS.length + CODE_SEARCH_TOOLS.length + CODE_TOOLS.length,
      );
      const r = await sse.callTool({ name: 'remember', arguments: { content: 'SSE clients still work' } });
      expect(r.isError).not.toBe(true);
      // A session is bound to its principal: another org cannot post into it.
      const stream = new AbortController();
      const opened = await fetch(`${url}/sse`, { headers: org.auth, signal: stream.signal });
      const reader = opened.body?.getReader();
      let text = '';
      while (!text.includes('sessionId=')) {
        const chunk = await reader?.read();
        if (chunk === undefined || chunk.done) break;
        text += new TextDecoder().decode(chunk.value);
      }
      const endpoint = /data: (\/messages\?sessionId=[\w-]+)/.exec(text)?.[1];
      expect(endpoint).toBeDefined();
      const other = await t.makeOrg();
      const post = (headers: Record<string, string>) =>
        fetch(`${url}${endpoint ?? ''}`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
        });
      expect((await post(other.auth)).status).toBe(404);
      expect((await post(org.auth)).status).toBe(202);
      stream.abort();
    } finally {
      await sse.close();
    }
  });

  it('loses nothing when 20 clients write entities and observations at once', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => connect(url, org.auth)));
    try {
      await clients[0]?.callTool({
        name: 'create_entities',
        arguments: { entities: [{ name: 'shared', entityType: 'hub', observations: [] }], scope: { project: 'c20' } },
      });
      await Promise.all(
        clients.map(async (c, i) => {
          await c.callTool({
            name: 'create_entities',
            arguments: {
              entities: [{ name: `node-${i}`, entityType: 'leaf', observations: [`born ${i}`] }],
              scope: { project: 'c20' },
            },
          });
          for (let k = 0; k < 3; k++) {
            const r = await c.callTool({
              name: 'add_observations',
              arguments: {
                observations: [
                  { entityName: 'shared', contents: [`from client ${i} #${k}`] },
                  { entityName: `node-${i}`, contents: [`note ${k}`] },
                ],
                scope: { project: 'c20' },
              },
            });
            expect(r.isError, JSON.stringify(r)).not.toBe(true);
          }
          await c.callTool({
            name: 'create_relations',
            arguments: {
              relations: [{ from: `node-${i}`, to: 'shared', relationType: 'feeds' }],
              scope: { project: 'c20' },
            },
          });
        }),
      );
      const graph = await clients[0]?.callTool({
        name: 'read_graph',
        arguments: { scope: { project: 'c20' }, limit: 500 },
      });
      const g = structured(graph) as {
        entities: Array<{ name: string; observations: string[] }>;
        relations: unknown[];
      };
      expect(g.entities).toHaveLength(21);
      expect(g.entities.find((e) => e.name === 'shared')?.observations).toHaveLength(60);
      for (let i = 0; i < 20; i++) {
        expect(g.entities.find((e) => e.name === `node-${i}`)?.observations).toHaveLength(4);
      }
      expect(g.relations).toHaveLength(20);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

describe(`MCP with OAuth 2.1 tokens (${backend})`, () => {
  let t: TestEngram;
  let url: string;
  let key: SigningKey;
  let org: TestOrg;

  beforeAll(async () => {
    key = await signingKey('ES256');
    t = await createTestEngram(jwtEnv(key));
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    org = await t.makeOrg();
  });
  afterAll(async () => t.close());

  it('follows the discovery path: 401 → protected-resource metadata → token → tools', async () => {
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1];
    expect(metadataUrl).toBe(`${TEST_PUBLIC_URL}/.well-known/oauth-protected-resource/mcp`);
    // The test reaches the server on loopback; the metadata names the public URL.
    const metadata = (await (await fetch(`${url}${new URL(metadataUrl ?? '').pathname}`)).json()) as Record<
      string,
      unknown
    >;
    expect(metadata).toMatchObject({
      resource: `${TEST_PUBLIC_URL}/mcp`,
      authorization_servers: ['https://idp.engram.test'],
      bearer_methods_supported: ['header'],
      scopes_supported: expect.arrayContaining(['memories:read', 'memories:write']),
    });

    const token = await mintToken(key, { org: org.orgId, roles: ['reader'] });
    const client = await connect(url, { authorization: `Bearer ${token}` });
    try {
      // The reader role holds code:read too.
      expect((await client.listTools()).tools.map((x) => x.name).sort()).toEqual(
        [...READ_TOOLS, ...CODE_SEARCH_TOOLS, ...CODE_TOOLS].sort(),
      );
    } finally {
      await client.close();
    }
    const wrongAudience = await mintToken(key, { org: org.orgId, roles: ['reader'], aud: 'https://other.example' });
    await expect(connect(url, { authorization: `Bearer ${wrongAudience}` })).rejects.toThrow();
  });

  it('works with a DPoP-bound token, a fresh proof per request', async () => {
    const dpop = await dpopClient('ES256');
    const token = await mintToken(key, { org: org.orgId, roles: ['member'], jkt: dpop.jkt });
    const withProof: typeof fetch = async (input, init) => {
      const method = init?.method ?? 'GET';
      const proof = await dpop.proof({ htm: method, htu: `${TEST_PUBLIC_URL}/mcp`, accessToken: token });
      const headers = new Headers(init?.headers);
      headers.set('authorization', `DPoP ${token}`);
      headers.set('dpop', proof);
      return fetch(input, { ...init, headers });
    };
    const client = await connect(url, {}, withProof);
    try {
      const r = await client.callTool({ name: 'remember', arguments: { content: 'bound tokens work over MCP' } });
      expect(r.isError).not.toBe(true);
      const who = await t.app.inject({ method: 'GET', url: '/v1/audit?action=mcp.remember', headers: org.auth });
      expect(who.json().items[0].actor).toMatchObject({ type: 'user', authMethod: 'jwt_dpop' });
    } finally {
      await client.close();
    }
  });
});
