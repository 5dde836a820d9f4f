import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely, type Transaction } from 'kysely';
import { AppError } from '../../errors.ts';
import type { DB } from './schema.ts';

/**
 * Numbered, reversible SQL migrations. Each file `NNNN_name.sql` opens with a
 * "why" comment, then `-- migrate:up` and `-- migrate:down` sections. Each
 * migration runs in its own transaction under an advisory lock; before it runs,
 * the row count and a checksum of every existing table it touches are
 * captured, and after it they are compared: a migration that changes data it
 * did not declare (`-- migrate:rewrites table[, table]`) is rolled back.
 */

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly why: string;
  readonly up: string;
  readonly down: string;
  readonly checksum: string;
  readonly rewrites: readonly string[];
}

export interface MigrationStatus {
  readonly version: number;
  readonly name: string;
  readonly state: 'applied' | 'pending' | 'changed' | 'missing-file';
  readonly appliedAt: Date | undefined;
}

export interface TableSnapshot {
  readonly table: string;
  readonly rows: number;
  readonly columns: readonly string[];
  readonly checksum: string;
}

export interface MigrationRun {
  readonly version: number;
  readonly name: string;
  readonly direction: 'up' | 'down';
  readonly verified: readonly TableSnapshot[];
}

export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));

/** `0004_bm25`: how migrations are named in every message. */
export const migrationLabel = (m: { version: number; name: string }): string =>
  `${String(m.version).padStart(4, '0')}_${m.name}`;

// Arbitrary constant: one Engram schema per database migrates at a time.
const ADVISORY_LOCK_KEY = 4_203_172_026;

export function loadMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  return files.map((file) => {
    const text = readFileSync(`${dir}/${file}`, 'utf8');
    const upAt = text.indexOf('-- migrate:up');
    const downAt = text.indexOf('-- migrate:down');
    if (upAt < 0 || downAt < upAt) {
      throw new AppError('MIGRATION_FAILED', `${file}: needs '-- migrate:up' then '-- migrate:down' sections`);
    }
    const why = text
      .slice(0, upAt)
      .split('\n')
      .map((l) => l.replace(/^--\s?/, ''))
      .join('\n')
      .trim();
    if (!why.startsWith('Why:')) {
      throw new AppError('MIGRATION_FAILED', `${file}: must open with a '-- Why: …' comment`);
    }
    const rewrites = [...text.matchAll(/^-- migrate:rewrites (.+)$/gm)].flatMap((m) =>
      (m[1] ?? '').split(',').map((t) => t.trim()),
    );
    const [, version = '0', name = ''] = /^(\d{4})_(.+)\.sql$/.exec(file) ?? [];
    return {
      version: Number(version),
      name,
      why,
      up: text.slice(upAt + '-- migrate:up'.length, downAt).trim(),
      down: text.slice(downAt + '-- migrate:down'.length).trim(),
      checksum: createHash('sha256').update(text).digest('hex'),
      rewrites,
    };
  });
}

/** Tables a migration statement names as existing targets (best effort, by syntax). */
export function touchedTables(body: string): string[] {
  const re =
    /\b(?:ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|UPDATE|DELETE\s+FROM|INSERT\s+INTO|TRUNCATE(?:\s+TABLE)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|ON)\s+("?[a-z_][a-z0-9_]*"?)/gi;
  const out = new Set<string>();
  for (const m of body.matchAll(re)) out.add((m[1] ?? '').replaceAll('"', '').toLowerCase());
  return [...out];
}

function droppedTables(body: string): Set<string> {
  const re = /\bDROP\s+TABLE(?:\s+IF\s+EXISTS)?\s+("?[a-z_][a-z0-9_]*"?)/gi;
  return new Set([...body.matchAll(re)].map((m) => (m[1] ?? '').replaceAll('"', '').toLowerCase()));
}

async function ensureTable(db: Kysely<DB>): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS engram_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db);
}

async function existingTables(db: Kysely<DB> | Transaction<DB>): Promise<Set<string>> {
  const r = await sql<{ t: string }>`
    SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')`.execute(db);
  return new Set(r.rows.map((x) => x.t));
}

const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;

/**
 * Row count and an order-independent-of-storage checksum of the given columns
 * (all columns by default), ordered by primary key.
 */
export async function snapshotTable(
  db: Kysely<DB> | Transaction<DB>,
  table: string,
  onlyColumns?: readonly string[],
): Promise<TableSnapshot> {
  const cols = await sql<{ c: string }>`
    SELECT attname AS c FROM pg_attribute
    WHERE attrelid = ${`${table}`}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`.execute(db);
  const columns = cols.rows.map((r) => r.c).filter((c) => onlyColumns === undefined || onlyColumns.includes(c));
  const pk = await sql<{ c: string }>`
    SELECT a.attname AS c FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = ${table}::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`.execute(db);
  const order = (pk.rows.length > 0 ? pk.rows.map((r) => r.c) : columns).map(ident).join(', ');
  const rowExpr = columns.length === 0 ? `''` : `md5(ROW(${columns.map(ident).join(', ')})::text)`;
  const r = await sql<{ n: number; sum: string | null }>`
    SELECT count(*)::int AS n, md5(string_agg(${sql.raw(rowExpr)}, '' ORDER BY ${sql.raw(order)})) AS sum
    FROM ${sql.table(table)}`.execute(db);
  const row = r.rows[0];
  return { table, rows: row?.n ?? 0, columns, checksum: row?.sum ?? 'empty' };
}

/** Snapshots of every table in the schema: the basis of `migrate verify` and the down/up test. */
export async function snapshotAll(db: Kysely<DB>): Promise<TableSnapshot[]> {
  const tables = [...(await existingTables(db))].filter((t) => t !== 'engram_migrations').sort();
  const out: TableSnapshot[] = [];
  for (const t of tables) out.push(await snapshotTable(db, t));
  return out;
}

export class Migrator {
  private readonly migrations: readonly Migration[];
  constructor(
    private readonly db: Kysely<DB>,
    private readonly kind: 'pglite' | 'postgres',
    dir?: string,
    /** Transaction-local settings migrations may read, e.g. `engram.region` for existing orgs. */
    private readonly settings: Readonly<Record<string, string>> = {},
  ) {
    this.migrations = loadMigrations(dir);
  }

  get latestVersion(): number {
    return this.migrations.at(-1)?.version ?? 0;
  }

  async status(): Promise<MigrationStatus[]> {
    await ensureTable(this.db);
    const applied = await this.db.selectFrom('engram_migrations').selectAll().orderBy('version').execute();
    const byVersion = new Map(applied.map((a) => [a.version, a]));
    const out: MigrationStatus[] = this.migrations.map((m) => {
      const a = byVersion.get(m.version);
      return {
        version: m.version,
        name: m.name,
        state: a === undefined ? 'pending' : a.checksum === m.checksum ? 'applied' : 'changed',
        appliedAt: a?.applied_at,
      };
    });
    for (const a of applied) {
      if (!this.migrations.some((m) => m.version === a.version)) {
        out.push({ version: a.version, name: a.name, state: 'missing-file', appliedAt: a.applied_at });
      }
    }
    return out.sort((x, y) => x.version - y.version);
  }

  /** True when every migration file is applied unchanged. */
  async isCurrent(): Promise<boolean> {
    const s = await this.status();
    return s.every((m) => m.state === 'applied');
  }

  async up(target?: number): Promise<MigrationRun[]> {
    const status = await this.status();
    const pending = this.migrations.filter(
      (m) =>
        status.find((s) => s.version === m.version)?.state === 'pending' &&
        (target === undefined || m.version <= target),
    );
    const runs: MigrationRun[] = [];
    for (const m of pending) runs.push(await this.run(m, 'up'));
    return runs;
  }

  async down(steps = 1): Promise<MigrationRun[]> {
    const status = await this.status();
    const applied = status
      .filter((s) => s.state !== 'pending')
      .reverse()
      .slice(0, steps);
    const runs: MigrationRun[] = [];
    for (const s of applied) {
      const m = this.migrations.find((x) => x.version === s.version);
      if (m === undefined) {
        throw new AppError(
          'MIGRATION_FAILED',
          `Migration ${migrationLabel(s)} is applied but its file is missing; cannot roll back`,
        );
      }
      runs.push(await this.run(m, 'down'));
    }
    return runs;
  }

  private async run(m: Migration, direction: 'up' | 'down'): Promise<MigrationRun> {
    const body = direction === 'up' ? m.up : m.down;
    const label = `${migrationLabel(m)} (${direction})`;
    try {
      return await this.db.transaction().execute(async (tx) => {
        if (this.kind === 'postgres') await sql`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_KEY})`.execute(tx);
        for (const [k, v] of Object.entries(this.settings)) await sql`SELECT set_config(${k}, ${v}, true)`.execute(tx);
        // Someone else may have applied it while we waited for the lock.
        const done = await tx
          .selectFrom('engram_migrations')
          .select('version')
          .where('version', '=', m.version)
          .executeTakeFirst();
        if ((direction === 'up') === (done !== undefined)) {
          return { version: m.version, name: m.name, direction, verified: [] };
        }
        const before = await existingTables(tx);
        const watched = touchedTables(body).filter((t) => before.has(t) && t !== 'engram_migrations');
        const dropped = droppedTables(body);
        const snaps = new Map<string, TableSnapshot>();
        for (const t of watched) if (!dropped.has(t)) snaps.set(t, await snapshotTable(tx, t));

        await sql.raw(body).execute(tx);

        const verified: TableSnapshot[] = [];
        for (const [t, snap] of snaps) {
          if (m.rewrites.includes(t)) continue;
          const after = await snapshotTable(tx, t, snap.columns);
          if (after.columns.length !== snap.columns.length) continue; // a column was dropped on purpose
          if (after.rows !== snap.rows || after.checksum !== snap.checksum) {
            throw new AppError(
              'MIGRATION_FAILED',
              `${label} changed data in ${t} (rows ${snap.rows} → ${after.rows}) without declaring '-- migrate:rewrites ${t}'`,
            );
          }
          verified.push(after);
        }
        if (direction === 'up') {
          await tx
            .insertInto('engram_migrations')
            .values({ version: m.version, name: m.name, checksum: m.checksum })
            .execute();
        } else {
          await tx.deleteFrom('engram_migrations').where('version', '=', m.version).execute();
        }
        return { version: m.version, name: m.name, direction, verified };
      });
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw new AppError('MIGRATION_FAILED', `${label} failed and was rolled back: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  /**
   * Checks that applied files are unchanged and that every table with an
   * `org_id` column has Row-Level Security enabled and forced.
   */
  async verify(): Promise<{ ok: boolean; problems: string[] }> {
    const problems: string[] = [];
    for (const s of await this.status()) {
      if (s.state === 'changed') problems.push(`migration ${migrationLabel(s)} was edited after it was applied`);
      if (s.state === 'missing-file')
        problems.push(`migration ${migrationLabel(s)} is applied but its file is missing`);
      if (s.state === 'pending') problems.push(`migration ${migrationLabel(s)} is pending`);
    }
    const rls = await sql<{ t: string; enabled: boolean; forced: boolean }>`
      SELECT c.relname AS t, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind = 'r'
        AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
             OR c.relname = 'orgs')`.execute(this.db);
    for (const r of rls.rows) {
      if (!r.enabled || !r.forced) problems.push(`table ${r.t} holds tenant data but RLS is not enabled and forced`);
    }
    return { ok: problems.length === 0, problems };
  }
}
