// @ts-check
/**
 * Runs PGlite (Postgres compiled to WASM) on its own thread. PGlite executes on
 * the thread that calls it, so a long query or an index build on the main
 * thread would stall every HTTP request; here it stalls only this worker.
 *
 * Plain JavaScript on purpose: worker threads do not inherit a TypeScript
 * loader, and this file must run the same under tsx, vitest and plain node.
 *
 * Protocol (one request at a time is the caller's job: PGlite is one session):
 *   → { id, op: 'query', sql, params } | { id, op: 'exec', sql } | { id, op: 'close' }
 *   ← { id, ok: true, rows, affectedRows } | { id, ok: false, error }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { vector } from '@electric-sql/pglite-pgvector';
import { pg_textsearch } from '@electric-sql/pglite-pg_textsearch';

if (parentPort === null) throw new Error('pglite.worker.js must run in a worker thread');
const port = parentPort;

/** @param {unknown} e */
function serializeError(e) {
  const err = /** @type {Record<string, unknown>} */ (e ?? {});
  return {
    message: e instanceof Error ? e.message : String(e),
    code: typeof err.code === 'string' ? err.code : undefined,
    detail: typeof err.detail === 'string' ? err.detail : undefined,
    constraint: typeof err.constraint === 'string' ? err.constraint : undefined,
    table: typeof err.table === 'string' ? err.table : undefined,
  };
}

/** @type {PGlite} */
let pg;
try {
  const { dataDir } = /** @type {{ dataDir: string | undefined }} */ (workerData);
  pg = await PGlite.create({
    ...(dataDir ? { dataDir } : {}),
    extensions: { vector, pg_textsearch, pg_trgm },
  });
  port.postMessage({ id: 0, ok: true, rows: [], affectedRows: 0 });
} catch (e) {
  port.postMessage({ id: 0, ok: false, error: serializeError(e) });
  process.exit(1);
}

/**
 * A `text` parameter given as bytes goes to the server as they are, in binary
 * format (which for text is its UTF-8), as node-postgres sends a Buffer;
 * PGlite's own text serializer would turn them into "1,2,3". (Its typings
 * say a serializer returns a string; at run time bytes are sent as binary.)
 * @type {import('@electric-sql/pglite').SerializerOptions}
 */
const serializers = /** @type {import('@electric-sql/pglite').SerializerOptions} */ (
  /** @type {unknown} */ ({
    25: (/** @type {unknown} */ v) => (v instanceof Uint8Array ? v : pg.serializers[25]?.(v)),
  })
);

port.on('message', async (/** @type {{ id: number, op: string, sql?: string, params?: unknown[] }} */ msg) => {
  try {
    if (msg.op === 'query') {
      const res = await pg.query(msg.sql ?? '', msg.params ?? [], { serializers });
      port.postMessage({ id: msg.id, ok: true, rows: res.rows, affectedRows: res.affectedRows ?? 0 });
    } else if (msg.op === 'exec') {
      const results = await pg.exec(msg.sql ?? '');
      const last = results.at(-1);
      port.postMessage({ id: msg.id, ok: true, rows: last?.rows ?? [], affectedRows: last?.affectedRows ?? 0 });
    } else if (msg.op === 'close') {
      await pg.close();
      port.postMessage({ id: msg.id, ok: true, rows: [], affectedRows: 0 });
      port.close();
    } else {
      port.postMessage({ id: msg.id, ok: false, error: { message: `unknown op ${msg.op}` } });
    }
  } catch (e) {
    port.postMessage({ id: msg.id, ok: false, error: serializeError(e) });
  }
});
