import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { loadConfig } from '../src/config/config.ts';
import { ALL_SCOPES, type RequestContext } from '../src/domain/tenancy/tenancy.types.ts';
import { openEngram } from '../src/main.ts';
import { execFileSync } from 'node:child_process';

const root = mkdtempSync(path.join(tmpdir(), 'explain-'));
const repoDir = path.join(root, 'repo');
cpSync(process.argv[2] ?? 'node_modules/@opentelemetry', repoDir, { recursive: true });
const config = loadConfig({
  ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {}),
  ENGRAM_DATA_DIR: path.join(root, 'data'), LOG_LEVEL: 'silent', REEMBED_INTERVAL_MS: '0', RATE_LIMIT_ENABLED: 'false',
  EMBEDDER: 'builtin', CODE_ALLOWED_ROOTS: root, CODE_PRECISE: 'false', JOBS_POLL_MS: '0', DATABASE_STATEMENT_TIMEOUT_MS: '900000',
});
const engram = await openEngram(config, { log: pino({ level: 'silent' }) });
const org = await engram.system.insertOrg({ id: uuidv7(), slug: 'x' + uuidv7().slice(-6), name: 'x', region: config.residency.region });
const ctx: RequestContext = { orgId: org.id, actor: { type: 'system', id: 'b' }, roles: [], scopes: new Set(ALL_SCOPES), authMethod: 'api_key', requestId: 'b' };
const repo = await engram.repos.register(ctx, { path: repoDir });
const t0 = performance.now();
await engram.worker.runOnce();
console.log('index ms', performance.now() - t0);
const db = engram.database.db;
const q = async (label: string, text: string) => {
  await db.transaction().execute(async (tx) => {
    const r = await sql.raw<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS off) ${text}`).execute(tx);
    console.log(`---- ${label}\n` + r.rows.map((x) => x['QUERY PLAN']).join('\n'));
    throw new Error('rollback');
  }).catch((e) => { if ((e as Error).message !== 'rollback') throw e; });
};
const O = `'${org.id}'`, R = `'${repo.id}'`;
if (process.env.ANALYZE_FIRST) await sql`ANALYZE code_edges, code_symbols, code_files`.execute(db);
await q('recheck', `UPDATE code_edges SET dst_kind = NULL, dst_id = NULL, confidence = 0 WHERE org_id = ${O} AND repo_id = ${R} AND dst_id IS NOT NULL AND confidence <= 0.5`);
await q('imported', `UPDATE code_edges e SET dst_kind = 'symbol', dst_id = m.symbol_id, confidence = 0.95 FROM (
        SELECT DISTINCT ON (x.id) x.id AS edge_id, s.id AS symbol_id
        FROM code_edges x JOIN code_symbols s
          ON s.org_id = x.org_id AND s.file_id = x.hint_file_id AND s.name = x.dst_name
        WHERE x.org_id = ${O} AND x.repo_id = ${R} AND x.dst_id IS NULL AND x.hint_file_id IS NOT NULL
          AND x.kind <> 'IMPORTS'
        ORDER BY x.id, (s.parent_id IS NULL) DESC, s.exported DESC, s.start_line) m WHERE e.org_id = ${O} AND e.id = m.edge_id`);
await q('unique', `WITH u AS MATERIALIZED (
        SELECT s.name, (array_agg(s.id))[1] AS symbol_id FROM code_symbols s
        WHERE s.org_id = ${O} AND s.repo_id = ${R} AND s.name IN (
          SELECT dst_name FROM code_edges WHERE org_id = ${O} AND repo_id = ${R} AND dst_id IS NULL)
        GROUP BY s.name HAVING count(*) = 1
      )
      UPDATE code_edges e SET dst_kind = 'symbol', dst_id = u.symbol_id, confidence = 0.5
      FROM u
      WHERE e.org_id = ${O} AND e.repo_id = ${R} AND e.dst_id IS NULL AND e.dst_name = u.name
        AND e.kind IN ('CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS')
        AND (e.dst_module IS NULL OR e.hint_file_id IS NOT NULL)`);
await engram.close();
