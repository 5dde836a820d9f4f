/**
 * Two suites of MCP measurements.
 *
 * `recall` (default): recall through MCP vs the same search through REST:
 * what the MCP layer (JSON-RPC, a per-request server with scoped tools,
 * structured + text results, the audit entry per tool call) adds to a hybrid
 * search. Both faces run against the same store, sequentially (concurrency
 * 1), with the same queries, over real HTTP on loopback, after a warm-up.
 *
 *   npm run bench:mcp -- [--n 10000] [--queries 500] [--backends pglite,postgres]
 *
 * `graph` (`npm run bench:graph`): the knowledge-graph tools of Engram (its
 * /mcp endpoint and `engram mcp` over stdio) beside the official MCP memory
 * server, same machine, same calls (see lib/mcp-graph.ts).
 *
 *   npm run bench:graph -- [--entities 10000] [--calls 200] [--backends pglite,postgres]
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BACKENDS, DEFAULT_DATABASE_URL, startBackend, type BackendName } from './lib/backend.ts';
import { memoryAt, queryAt } from './lib/corpus.ts';
import { gitCommit, machine, resultFileName } from './lib/facts.ts';
import { postJson, progress, runPool } from './lib/load.ts';
import { GRAPH_FACES, GRAPH_TOOLS as TOOL_ORDER, runGraphSuite, type GraphFace } from './lib/mcp-graph.ts';
import { markdownTable, round, summarize, table, type LatencySummary } from './lib/stats.ts';

const HELP = `Usage: npm run bench:mcp -- [options]      (suite recall)
       npm run bench:graph -- [options]    (suite graph)

  --suite <name>       recall (default) or graph
  --backends <list>    pglite,postgres (default pglite)
  --seed <n>           corpus seed (default 42)
  --out <dir>          where to write the JSON (default bench/results)
  --help

recall:
  --n <count>          memories to ingest (default 10000)
  --queries <count>    measured searches per face (default 500)
  --warmup <count>     unmeasured searches per face first (default 50)
  --limit <k>          results per search (default 10)

graph:
  --entities <count>   entities to seed, two observations each (default 10000)
  --calls <count>      measured calls per tool and server (default 200)
  --warmup <count>     unmeasured rounds first (default 20)
  --batch <count>      entities per create_entities call (default 100)
  --faces <list>       official,http,stdio (default all three)
`;

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

interface Row {
  backend: BackendName;
  face: 'rest' | 'mcp';
  latency: LatencySummary;
  errors: number;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      suite: { type: 'string', default: 'recall' },
      n: { type: 'string', default: '10000' },
      queries: { type: 'string', default: '500' },
      warmup: { type: 'string' },
      limit: { type: 'string', default: '10' },
      entities: { type: 'string', default: '10000' },
      calls: { type: 'string', default: '200' },
      batch: { type: 'string', default: '100' },
      faces: { type: 'string', default: GRAPH_FACES.join(',') },
      backends: { type: 'string', default: 'pglite' },
      seed: { type: 'string', default: '42' },
      out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const seed = Number(values.seed);
  const backends = values.backends.split(',').map((b) => b.trim()) as BackendName[];
  for (const b of backends) if (!BACKENDS.includes(b)) throw new Error(`unknown backend ${b}`);
  if (values.suite === 'graph') return graphSuite(values, backends, seed);
  if (values.suite !== 'recall') throw new Error(`unknown suite ${values.suite}`);
  const n = Number(values.n);
  const queries = Number(values.queries);
  const warmup = Number(values.warmup ?? '50');
  const limit = Number(values.limit);
  const startedAt = new Date();
  const commit = gitCommit();
  const rows: Row[] = [];

  for (const name of backends) {
    const b = await startBackend(name, {
      databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
      valkeyUrl: process.env.VALKEY_URL,
      env: {},
    });
    try {
      log(`${name}: ingesting ${n} memories through REST`);
      const tick = progress(n, 10, (done) => log(`${name} ingest ${done}/${n}`));
      await runPool(n, 8, async (i) => {
        const m = memoryAt(seed, i);
        const r = await postJson(`${b.url}/v1/memories`, b.apiKey, m);
        if (r.status >= 300) throw new Error(`ingest failed: ${r.status} ${r.body}`);
        tick();
      });
      await b.server.engram.system.analyze(true);

      const client = new Client({ name: 'engram-bench', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL('/mcp', b.url), {
          requestInit: { headers: { authorization: `Bearer ${b.apiKey}` } },
        }),
      );
      const faces = {
        rest: async (i: number) =>
          (
            await postJson(`${b.url}/v1/memories/search`, b.apiKey, {
              query: queryAt(seed, i),
              mode: 'hybrid',
              limit,
            })
          ).status === 200,
        mcp: async (i: number) =>
          (await client.callTool({ name: 'recall', arguments: { query: queryAt(seed, i), limit } })).isError !== true,
      };
      try {
        // Interleaved, alternating which face goes first, so warm caches and
        // background noise fall on both alike.
        const samples = { rest: [] as number[], mcp: [] as number[] };
        const errors = { rest: 0, mcp: 0 };
        for (let i = -warmup; i < queries; i++) {
          const order = (i & 1) === 0 ? (['rest', 'mcp'] as const) : (['mcp', 'rest'] as const);
          for (const face of order) {
            const t0 = performance.now();
            const ok = await faces[face](i < 0 ? 1_000_000 - i : i);
            if (i < 0) continue;
            samples[face].push(performance.now() - t0);
            if (!ok) errors[face]++;
          }
        }
        for (const face of ['rest', 'mcp'] as const) {
          rows.push({ backend: name, face, latency: summarize(samples[face]), errors: errors[face] });
        }
      } finally {
        await client.close();
      }
    } finally {
      await b.close();
    }
  }

  const header = ['backend', 'face', 'p50 ms', 'p95 ms', 'p99 ms', 'mean ms', 'errors'];
  const body = rows.map((r) => [
    r.backend,
    r.face === 'mcp' ? 'MCP recall' : 'REST search',
    round(r.latency.p50),
    round(r.latency.p95),
    round(r.latency.p99),
    round(r.latency.mean),
    r.errors,
  ]);
  process.stdout.write(`\n${table(header, body)}\n\n${markdownTable(header, body)}\n`);
  mkdirSync(values.out, { recursive: true });
  const file = path.join(values.out, resultFileName('mcp', startedAt));
  writeFileSync(
    file,
    JSON.stringify({ startedAt, commit, machine: machine(), n, queries, warmup, limit, seed, rows }, null, 2),
  );
  process.stdout.write(`\nResults written to ${path.relative(process.cwd(), file)}\n`);
  return 0;
}

async function graphSuite(
  values: { entities: string; calls: string; warmup?: string | undefined; batch: string; faces: string; out: string },
  backends: readonly BackendName[],
  seed: number,
): Promise<number> {
  const faces = values.faces.split(',').map((f) => f.trim()) as GraphFace[];
  for (const f of faces) if (!GRAPH_FACES.includes(f)) throw new Error(`unknown face ${f}`);
  const opts = {
    entities: Number(values.entities),
    calls: Number(values.calls),
    warmup: Number(values.warmup ?? '20'),
    batch: Number(values.batch),
    seed,
    backends,
    faces,
    log,
  };
  const startedAt = new Date();
  const commit = gitCommit();
  const result = await runGraphSuite(opts);
  const label = {
    official: 'official server-memory',
    http: 'Engram /mcp (HTTP)',
    stdio: 'Engram `engram mcp` (stdio)',
  };
  const faceOrder = (f: GraphFace) => GRAPH_FACES.indexOf(f);
  const sorted = [...result.rows].sort(
    (a, b) =>
      backends.indexOf(a.backend) - backends.indexOf(b.backend) ||
      TOOL_ORDER.indexOf(a.tool) - TOOL_ORDER.indexOf(b.tool) ||
      faceOrder(a.face) - faceOrder(b.face),
  );
  const header = ['backend', 'tool', 'server', 'p50 ms', 'p95 ms', 'p99 ms', 'mean ms', 'errors', 'found'];
  const body = sorted.map((r) => [
    r.backend,
    r.tool,
    label[r.face],
    round(r.latency.p50),
    round(r.latency.p95),
    round(r.latency.p99),
    round(r.latency.mean),
    r.errors,
    r.found ?? '',
  ]);
  process.stdout.write(
    `\n${opts.entities} entities, ${opts.calls} calls per tool and server (the official server beside each Engram face)\n\n` +
      `${table(header, body)}\n\n${markdownTable(header, body)}\n`,
  );
  for (const s of result.seeding) {
    process.stdout.write(
      `\nseeding ${s.backend} ${label[s.face]}: ${s.seedSeconds} s${s.embedSeconds === undefined ? '' : `, then ${s.embedSeconds} s until every vector was computed`}`,
    );
  }
  mkdirSync(values.out, { recursive: true });
  const file = path.join(values.out, resultFileName('mcp-graph', startedAt));
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt,
        commit,
        machine: machine(),
        ...opts,
        log: undefined,
        seeding: result.seeding,
        info: result.info,
        rows: result.rows,
      },
      null,
      2,
    ),
  );
  process.stdout.write(`\n\nResults written to ${path.relative(process.cwd(), file)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench:mcp failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
