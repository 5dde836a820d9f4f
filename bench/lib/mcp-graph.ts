/**
 * The knowledge-graph tools of the official MCP memory server
 * (`@modelcontextprotocol/server-memory`) and of Engram, side by side: the
 * same entities seeded through create_entities, then the same search_nodes,
 * open_nodes and add_observations calls, one at a time, interleaved call by
 * call across the servers (the order rotating), after a warm-up.
 *
 * Faces: `official` (its stdio server, MEMORY_FILE_PATH in a temp dir),
 * `http` (Engram's /mcp over Streamable HTTP, server in this process) and
 * `stdio` (`engram mcp` as an agent launches it, on the same store once the
 * server has stopped). The official server is measured beside each Engram
 * face and its samples pooled.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DATABASE_URL, startBackend, type Backend, type BackendName } from './backend.ts';
import { graphCallsAt, graphEntityAt } from './graph-corpus.ts';
import { round, roundSummary, summarize, type LatencySummary } from './stats.ts';

export const GRAPH_FACES = ['official', 'http', 'stdio'] as const;
export type GraphFace = (typeof GRAPH_FACES)[number];
/**
 * `open_nodes []` (no names) asks for nothing: Engram answers without
 * touching the graph, so it measures what every call pays (transport, auth,
 * the audit entry, JSON-RPC); the official server still reads its file.
 */
const TOOLS = ['search_nodes', 'open_nodes', 'add_observations', 'open_nodes []'] as const;
type Tool = (typeof TOOLS)[number];
export const GRAPH_TOOLS: readonly Tool[] = TOOLS;

export interface GraphSuiteOptions {
  readonly entities: number;
  readonly calls: number;
  readonly warmup: number;
  /** Entities per create_entities call (Engram takes at most 100). */
  readonly batch: number;
  readonly seed: number;
  readonly backends: readonly BackendName[];
  readonly faces: readonly GraphFace[];
  readonly log: (s: string) => void;
}

export interface GraphRow {
  readonly backend: BackendName;
  readonly face: GraphFace;
  readonly tool: Tool;
  readonly latency: LatencySummary;
  readonly errors: number;
  /** search_nodes: mean entities answered. */
  readonly found?: number;
}

export interface GraphSuiteResult {
  readonly rows: GraphRow[];
  /** Per backend and face: seconds to seed, and (Engram) to compute every vector after. */
  readonly seeding: Array<{ backend: BackendName; face: GraphFace; seedSeconds: number; embedSeconds?: number }>;
  readonly info: Record<string, Record<string, unknown>>;
}

const ENGRAM_BIN = fileURLToPath(new URL('../../bin/engram.js', import.meta.url));
const OFFICIAL_BIN = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-memory/package.json')),
  'dist/index.js',
);

/** Every environment variable but those that would point a child at another store or key. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(ENGRAM_|DATABASE_URL|VALKEY_URL|MEMORY_FILE_PATH)/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

async function connect(name: string, transport: StdioClientTransport | StreamableHTTPClientTransport): Promise<Client> {
  const client = new Client({ name: `engram-bench-${name}`, version: '1.0.0' });
  await client.connect(transport);
  return client;
}

const entitiesOf = (r: unknown): number => {
  const structured = (r as { structuredContent?: { entities?: unknown[] } }).structuredContent;
  if (Array.isArray(structured?.entities)) return structured.entities.length;
  const text = (r as { content?: Array<{ text?: string }> }).content?.[0]?.text ?? '{}';
  const parsed = JSON.parse(text) as { entities?: unknown[] };
  return parsed.entities?.length ?? 0;
};

async function seed(client: Client, opts: GraphSuiteOptions, label: string): Promise<number> {
  const t0 = performance.now();
  const step = Math.max(1, Math.floor(opts.entities / opts.batch / 10));
  for (let i = 0, call = 0; i < opts.entities; i += opts.batch, call++) {
    const entities = Array.from({ length: Math.min(opts.batch, opts.entities - i) }, (_, k) =>
      graphEntityAt(i + k, opts.entities),
    );
    const r = await client.callTool({ name: 'create_entities', arguments: { entities } });
    if (r.isError === true) throw new Error(`${label}: create_entities failed: ${JSON.stringify(r.content)}`);
    if (call % step === 0) opts.log(`${label}: seeded ${Math.min(i + opts.batch, opts.entities)}/${opts.entities}`);
  }
  return (performance.now() - t0) / 1000;
}

interface Samples {
  ms: Record<Tool, number[]>;
  errors: Record<Tool, number>;
  found: number[];
}

const emptySamples = (): Samples => ({
  ms: { search_nodes: [], open_nodes: [], add_observations: [], 'open_nodes []': [] },
  errors: { search_nodes: 0, open_nodes: 0, add_observations: 0, 'open_nodes []': 0 },
  found: [],
});

/** One call of each tool per face per iteration, faces in rotating order. */
async function measure(
  faces: ReadonlyArray<{ face: GraphFace; client: Client; samples: Samples }>,
  opts: GraphSuiteOptions,
  offset: number,
): Promise<void> {
  for (let k = -opts.warmup; k < opts.calls; k++) {
    const c = graphCallsAt(opts.seed, offset + k, opts.entities);
    const args: Record<Tool, Record<string, unknown>> = {
      search_nodes: { query: c.query },
      open_nodes: { names: c.names },
      add_observations: { observations: [{ entityName: c.observe, contents: [`bench note ${offset + k}`] }] },
      'open_nodes []': { names: [] },
    };
    const shift = ((k % faces.length) + faces.length) % faces.length;
    const order = [...faces.slice(shift), ...faces.slice(0, shift)];
    for (const f of order) {
      for (const tool of TOOLS) {
        const t0 = performance.now();
        let ok = true;
        let found: number | undefined;
        try {
          const r = await f.client.callTool({ name: tool.split(' ')[0] ?? tool, arguments: args[tool] });
          ok = r.isError !== true;
          if (tool === 'search_nodes' && ok) found = entitiesOf(r);
        } catch {
          ok = false;
        }
        const ms = performance.now() - t0;
        if (k < 0) continue;
        f.samples.ms[tool].push(ms);
        if (!ok) f.samples.errors[tool]++;
        if (found !== undefined) f.samples.found.push(found);
      }
    }
  }
}

function rowsOf(backend: BackendName, face: GraphFace, s: Samples): GraphRow[] {
  return TOOLS.map((tool) => ({
    backend,
    face,
    tool,
    latency: roundSummary(summarize(s.ms[tool])),
    errors: s.errors[tool],
    ...(tool === 'search_nodes' && s.found.length > 0
      ? { found: round(s.found.reduce((a, b) => a + b, 0) / s.found.length, 1) }
      : {}),
  }));
}

export async function runGraphSuite(opts: GraphSuiteOptions): Promise<GraphSuiteResult> {
  const rows: GraphRow[] = [];
  const seeding: GraphSuiteResult['seeding'] = [];
  const info: GraphSuiteResult['info'] = {};
  const { log } = opts;

  for (const name of opts.backends) {
    const official = { face: 'official' as const, samples: emptySamples(), client: undefined as Client | undefined };
    const memoryDir = mkdtempSync(path.join(tmpdir(), 'engram-bench-official-'));
    let b: Backend | undefined;
    const clients: Client[] = [];
    try {
      if (opts.faces.includes('official')) {
        official.client = await connect(
          'official',
          new StdioClientTransport({
            command: process.execPath,
            args: [OFFICIAL_BIN],
            env: childEnv({ MEMORY_FILE_PATH: path.join(memoryDir, 'memory.jsonl') }),
            stderr: 'ignore',
          }),
        );
        clients.push(official.client);
        log(`${name}: seeding the official server`);
        seeding.push({
          backend: name,
          face: 'official',
          seedSeconds: round(await seed(official.client, opts, 'official')),
        });
      }
      const engramFaces = opts.faces.filter((f) => f !== 'official');
      if (engramFaces.length === 0) {
        if (official.client !== undefined) {
          await measure([{ face: 'official', client: official.client, samples: official.samples }], opts, 0);
        }
      } else {
        b = await startBackend(name, {
          databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
          valkeyUrl: process.env.VALKEY_URL,
          env: {},
        });
        info[name] = b.info;
        const http = await connect(
          'http',
          new StreamableHTTPClientTransport(new URL('/mcp', b.url), {
            requestInit: { headers: { authorization: `Bearer ${b.apiKey}` } },
          }),
        );
        clients.push(http);
        log(`${name}: seeding Engram through /mcp`);
        const seedSeconds = await seed(http, opts, `engram ${name}`);
        // Vectors are computed in the background; measure once they all are,
        // with fresh planner statistics and (embedded store) a vacuum, as the
        // server's own background maintenance leaves the store.
        const t0 = performance.now();
        const embedded = await b.server.engram.graph.flushEmbeddings();
        if (embedded.error !== undefined) {
          throw new Error(`${name}: embedding after seeding failed`, { cause: embedded.error });
        }
        const embedSeconds = (performance.now() - t0) / 1000;
        log(`${name}: ${embedded.embedded} vectors computed in ${round(embedSeconds, 1)} s after seeding`);
        await b.server.engram.system.analyzeGraph();
        if (b.name === 'pglite') await b.server.engram.system.vacuum();
        seeding.push({
          backend: name,
          face: 'http',
          seedSeconds: round(seedSeconds),
          embedSeconds: round(embedSeconds),
        });

        let offset = 0;
        if (engramFaces.includes('http')) {
          const faces: Array<{ face: GraphFace; client: Client; samples: Samples }> = [
            { face: 'http', client: http, samples: emptySamples() },
          ];
          if (official.client !== undefined)
            faces.push({ face: 'official', client: official.client, samples: official.samples });
          log(`${name}: measuring ${faces.map((f) => f.face).join(' + ')}`);
          await measure(faces, opts, offset);
          offset += opts.warmup + opts.calls;
          rows.push(...rowsOf(name, 'http', faces[0]?.samples ?? emptySamples()));
          await b.server.engram.graph.flushEmbeddings();
        }
        await http.close();
        clients.splice(clients.indexOf(http), 1);

        if (engramFaces.includes('stdio')) {
          // `engram mcp` opens the store itself: on the embedded store only once the server let go of it.
          await b.server.stop();
          const store = b.config.store;
          const stdio = await connect(
            'stdio',
            new StdioClientTransport({
              command: process.execPath,
              args: [ENGRAM_BIN, 'mcp'],
              env: childEnv({
                ENGRAM_DATA_DIR: b.dataDir,
                ENGRAM_API_KEY: b.apiKey,
                EMBEDDER: 'builtin',
                LOG_LEVEL: 'warn',
                REEMBED_INTERVAL_MS: '0',
                RATE_LIMIT_ENABLED: 'false',
                ...(store.kind === 'postgres' ? { DATABASE_URL: store.url } : {}),
                ...(b.config.valkeyUrl === undefined ? {} : { VALKEY_URL: b.config.valkeyUrl }),
              }),
              stderr: 'inherit',
            }),
          );
          clients.push(stdio);
          const faces: Array<{ face: GraphFace; client: Client; samples: Samples }> = [
            { face: 'stdio', client: stdio, samples: emptySamples() },
          ];
          if (official.client !== undefined)
            faces.push({ face: 'official', client: official.client, samples: official.samples });
          log(`${name}: measuring ${faces.map((f) => f.face).join(' + ')}`);
          await measure(faces, opts, offset);
          rows.push(...rowsOf(name, 'stdio', faces[0]?.samples ?? emptySamples()));
        }
      }
      if (official.client !== undefined) rows.push(...rowsOf(name, 'official', official.samples));
    } finally {
      for (const c of clients) await c.close().catch(() => undefined);
      await b?.close();
      rmSync(memoryDir, { recursive: true, force: true });
    }
  }
  return { rows, seeding, info };
}
