import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, createTestEngram, type TestEngram } from '../helpers/test-engram.ts';

/*
 * Agents configured for the official MCP memory server should be able to switch
 * to Engram. This replays one session of tool calls — same names, same
 * arguments — against the real official server (the npm package, run over
 * stdio with a temp file) and against Engram, and compares the answers.
 */

interface Entity {
  name: string;
  entityType: string;
  observations: string[];
}
interface Relation {
  from: string;
  to: string;
  relationType: string;
}

const SESSION: Array<{ name: string; arguments: Record<string, unknown> }> = [
  {
    name: 'create_entities',
    arguments: {
      entities: [
        {
          name: 'John_Smith',
          entityType: 'person',
          observations: ['Speaks fluent Spanish', 'Prefers morning meetings'],
        },
        { name: 'Anthropic', entityType: 'organization', observations: ['AI safety company'] },
        { name: 'Payments_Service', entityType: 'service', observations: ['Written in Go', 'Owned by team Atlas'] },
      ],
    },
  },
  // A repeated name is skipped, not duplicated.
  {
    name: 'create_entities',
    arguments: { entities: [{ name: 'Anthropic', entityType: 'organization', observations: [] }] },
  },
  {
    name: 'create_relations',
    arguments: {
      relations: [
        { from: 'John_Smith', to: 'Anthropic', relationType: 'works_at' },
        { from: 'John_Smith', to: 'Payments_Service', relationType: 'maintains' },
      ],
    },
  },
  {
    name: 'create_relations',
    arguments: { relations: [{ from: 'John_Smith', to: 'Anthropic', relationType: 'works_at' }] },
  },
  {
    name: 'add_observations',
    arguments: {
      observations: [
        { entityName: 'John_Smith', contents: ['Graduated in 2019', 'Speaks fluent Spanish'] },
        { entityName: 'Payments_Service', contents: ['Retries webhooks three times'] },
      ],
    },
  },
  { name: 'open_nodes', arguments: { names: ['John_Smith', 'Anthropic'] } },
  { name: 'search_nodes', arguments: { query: 'Spanish' } },
  { name: 'search_nodes', arguments: { query: 'service' } },
  { name: 'read_graph', arguments: {} },
  {
    name: 'delete_observations',
    arguments: { deletions: [{ entityName: 'John_Smith', observations: ['Prefers morning meetings'] }] },
  },
  {
    name: 'delete_relations',
    arguments: { relations: [{ from: 'John_Smith', to: 'Payments_Service', relationType: 'maintains' }] },
  },
  { name: 'open_nodes', arguments: { names: ['John_Smith', 'Payments_Service'] } },
  { name: 'delete_entities', arguments: { entityNames: ['Anthropic'] } },
  { name: 'read_graph', arguments: {} },
];

/** Order-insensitive view of a graph answer: entities and relations sorted, observations sorted. */
function normalise(v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...v };
  delete out.nextCursor;
  delete out.degraded;
  const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  if (Array.isArray(out.entities)) {
    out.entities = (out.entities as Entity[])
      .map((e) => ({ ...e, observations: [...e.observations].sort(byKey) }))
      .sort((a, b) => byKey(a.name, b.name));
  }
  if (Array.isArray(out.relations)) {
    out.relations = [...(out.relations as Relation[])].sort((a, b) =>
      byKey(`${a.from}|${a.to}|${a.relationType}`, `${b.from}|${b.to}|${b.relationType}`),
    );
  }
  if (Array.isArray(out.results)) {
    out.results = [...(out.results as Array<{ entityName: string }>)].sort((a, b) => byKey(a.entityName, b.entityName));
  }
  return out;
}

describe(`compatibility with the official MCP memory server (${backend})`, () => {
  let t: TestEngram;
  let engram: Client;
  let official: Client;
  let dir: string;

  beforeAll(async () => {
    t = await createTestEngram();
    const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const org = await t.makeOrg();
    engram = new Client({ name: 'compat', version: '1.0.0' });
    await engram.connect(
      new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers: org.auth } }),
    );

    dir = mkdtempSync(path.join(tmpdir(), 'engram-compat-'));
    const entry = createRequire(import.meta.url).resolve('@modelcontextprotocol/server-memory/dist/index.js');
    official = new Client({ name: 'compat', version: '1.0.0' });
    const { VITEST: _v, ...env } = process.env;
    await official.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [entry],
        env: { ...(env as Record<string, string>), MEMORY_FILE_PATH: path.join(dir, 'memory.jsonl') },
        stderr: 'ignore',
      }),
    );
  });
  afterAll(async () => {
    await engram.close();
    await official.close();
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('offers the official tool names, each with an input schema accepting the same arguments', async () => {
    const theirs = (await official.listTools()).tools;
    const ours = new Map((await engram.listTools()).tools.map((x) => [x.name, x]));
    for (const tool of theirs) {
      const mine = ours.get(tool.name);
      expect(mine, tool.name).toBeDefined();
      const required = (tool.inputSchema.required ?? []) as string[];
      expect(mine?.inputSchema.required ?? [], tool.name).toEqual(required);
      for (const prop of Object.keys(tool.inputSchema.properties ?? {})) {
        expect(Object.keys(mine?.inputSchema.properties ?? {}), `${tool.name}.${prop}`).toContain(prop);
      }
    }
  });

  it('answers a replayed session like the official server', async () => {
    for (const [i, call] of SESSION.entries()) {
      const a = await official.callTool(call);
      const b = await engram.callTool(call);
      const label = `step ${i}: ${call.name} ${JSON.stringify(call.arguments)}`;
      expect(b.isError, `${label}: ${JSON.stringify(b.content)}`).not.toBe(true);
      const theirs = normalise(a.structuredContent as Record<string, unknown>);
      const ours = normalise(b.structuredContent as Record<string, unknown>);
      if (call.name === 'search_nodes') {
        // Engram's search is hybrid: it finds every substring match the official server finds,
        // and may add entities related by meaning.
        const names = (ours.entities as Entity[]).map((e) => e.name);
        for (const e of theirs.entities as Entity[]) {
          expect(names, label).toContain(e.name);
          expect(
            (ours.entities as Entity[]).find((x) => x.name === e.name),
            label,
          ).toEqual(e);
        }
      } else {
        expect(ours, label).toEqual(theirs);
      }
    }
  });

  it('refuses a relation to a missing entity, where the official server stores it dangling', async () => {
    const r = await engram.callTool({
      name: 'create_relations',
      arguments: { relations: [{ from: 'John_Smith', to: 'Nobody', relationType: 'knows' }] },
    });
    expect(r.isError).toBe(true);
    expect(JSON.stringify(r.content)).toMatch(/Nobody/);
  });
});
