import { sql, type Kysely, type Selectable, type Transaction, type UpdateObject } from 'kysely';
import type { Job, JobFilter, JobState, JobStats, NewJob } from '../../domain/jobs/job.types.ts';
import type { Page } from '../../domain/memory/memory.types.ts';
import { errors } from '../../errors.ts';
import type { ClaimRequest, JobQueue, JobStore } from '../../ports/job-queue.ts';
import { guard } from './pg-errors.ts';
import type { DB, JobsTable } from './schema.ts';
import { isUuid } from './tenant-db.pg.ts';

type JobRecord = Selectable<JobsTable>;

/**
 * The transaction-scoped advisory lock claims take in turn (the migrator's
 * is 4_203_172_026): an arbitrary constant no other lock in the database uses.
 */
const CLAIM_LOCK_KEY = 4_203_172_027;

/** Failure texts are bounded: they are stored per job and shown to clients. */
const MAX_ERROR_CHARS = 1_000;

function toJob(r: JobRecord): Job {
  return {
    id: r.id,
    orgId: r.org_id,
    kind: r.kind,
    payload: r.payload,
    state: r.state as JobState,
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    runAt: new Date(r.run_at),
    lockedUntil: r.locked_until === null ? null : new Date(r.locked_until),
    lockedBy: r.locked_by,
    lastError: r.last_error,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
  };
}

const encodeCursor = (id: string): string => Buffer.from(id, 'utf8').toString('base64url');
function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isUuid(id)) throw errors.validation('cursor is not valid', { field: 'cursor' });
  return id;
}

/** One org's jobs, inside its `withTenant` transaction (RLS applies). */
export class PgJobStore implements JobStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly orgId: string,
  ) {}

  async insertJob(job: NewJob): Promise<Job> {
    const r = await this.tx
      .insertInto('jobs')
      .values({
        org_id: this.orgId,
        id: job.id,
        kind: job.kind,
        payload: JSON.stringify(job.payload),
        max_attempts: job.maxAttempts,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toJob(r);
  }

  async insertJobs(jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.tx
      .insertInto('jobs')
      .values(
        jobs.map((job) => ({
          org_id: this.orgId,
          id: job.id,
          kind: job.kind,
          payload: JSON.stringify(job.payload),
          max_attempts: job.maxAttempts,
        })),
      )
      .execute();
  }

  async findJob(id: string): Promise<Job | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await this.tx
      .selectFrom('jobs')
      .selectAll()
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .executeTakeFirst();
    return r === undefined ? undefined : toJob(r);
  }

  async findJobs(filter: JobFilter, limit: number, cursor: string | null): Promise<Page<Job>> {
    let q = this.tx.selectFrom('jobs').selectAll().where('org_id', '=', this.orgId);
    if (filter.state !== undefined) q = q.where('state', '=', filter.state);
    if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
    if (cursor !== null) q = q.where('id', '<', decodeCursor(cursor));
    const rows = await q
      .orderBy('id', 'desc')
      .limit(limit + 1)
      .execute();
    const items = rows.slice(0, limit).map(toJob);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.id) : null };
  }

  async requeueDeadJob(id: string): Promise<{ job: Job; requeued: boolean } | undefined> {
    if (!isUuid(id)) return undefined;
    const r = await this.tx
      .updateTable('jobs')
      .set(REQUEUE)
      .where('org_id', '=', this.orgId)
      .where('id', '=', id)
      .where('state', '=', 'dead')
      .returningAll()
      .executeTakeFirst();
    if (r !== undefined) return { job: toJob(r), requeued: true };
    const job = await this.findJob(id);
    return job === undefined ? undefined : { job, requeued: false };
  }

  async requeueDeadJobs(kind: string | undefined, limit: number): Promise<number> {
    const r = await sql<{ n: number }>`
      WITH picked AS (
        SELECT org_id, id FROM jobs
        WHERE org_id = ${this.orgId} AND state = 'dead' ${kind === undefined ? sql`` : sql`AND kind = ${kind}`}
        ORDER BY id LIMIT ${limit} FOR UPDATE
      ), done AS (
        UPDATE jobs j SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL, updated_at = now()
        FROM picked p WHERE j.org_id = p.org_id AND j.id = p.id RETURNING 1
      ) SELECT count(*)::int AS n FROM done`.execute(this.tx);
    return r.rows[0]?.n ?? 0;
  }
}

const REQUEUE = {
  state: 'queued',
  attempts: 0,
  run_at: sql<Date>`now()`,
  finished_at: null,
  updated_at: sql<Date>`now()`,
} as const;

/**
 * The workers' queue on PostgreSQL/PGlite. Every call is one short
 * transaction as `engram_system` (whose RLS policy spans orgs): no lock is
 * held while a job runs — the lease in `locked_until` stands in for it.
 */
export class PgJobQueue implements JobQueue {
  /** `systemDb`: the pool whose sessions run as engram_system (see `Database`). */
  constructor(private readonly systemDb: Kysely<DB>) {}

  private asSystem<T>(fn: (tx: Transaction<DB>) => Promise<T>): Promise<T> {
    return guard(() =>
      this.systemDb.transaction().execute(async (tx) => {
        await sql`SELECT set_config('role', 'engram_system', true)`.execute(tx);
        return fn(tx);
      }),
    );
  }

  async claim(req: ClaimRequest): Promise<Job[]> {
    if (req.limit <= 0 || req.kinds.length === 0) return [];
    // NULL: no cap (least() ignores it).
    const cap = req.maxRunningPerOrg === undefined ? null : Math.max(0, req.maxRunningPerOrg);
    return this.asSystem(async (tx) => {
      // Expired leases first: their worker crashed or stalled. The run it
      // started counts as an attempt, so a job that kills its worker dies
      // after max_attempts instead of taking the fleet down in a loop.
      await sql`
        UPDATE jobs j SET
          state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
          finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
          run_at = now(), locked_until = NULL, locked_by = NULL, updated_at = now(),
          last_error = 'lease expired: the worker stopped or stalled during the run'
        FROM (
          SELECT org_id, id FROM jobs WHERE state = 'running' AND locked_until <= now()
          ORDER BY locked_until LIMIT 1000 FOR UPDATE SKIP LOCKED
        ) x
        WHERE j.org_id = x.org_id AND j.id = x.id`.execute(tx);
      // Claims queue behind each other (for as long as one claim statement
      // takes): each then sees what the one before it claimed, so the running
      // counts that order the orgs, and the cap, are exact across workers.
      await sql`SELECT pg_advisory_xact_lock(${CLAIM_LOCK_KEY})`.execute(tx);
      const r = await sql<JobRecord & { turn: number }>`
        WITH RECURSIVE waiting (org_id) AS (
          -- The orgs with queued jobs, one index probe each (a loose index scan).
          (SELECT org_id FROM jobs WHERE state = 'queued' ORDER BY org_id LIMIT 1)
          UNION ALL
          SELECT (SELECT q.org_id FROM jobs q WHERE q.state = 'queued' AND q.org_id > w.org_id
                  ORDER BY q.org_id LIMIT 1)
          FROM waiting w WHERE w.org_id IS NOT NULL
        ), candidates AS (
          -- Per org, its oldest due jobs, as many as it may still start; the
          -- k-th of an org that runs n jobs now would be its (n + k)-th.
          SELECT c.org_id, c.id, c.run_at, busy.n + c.k AS turn
          FROM waiting w
          CROSS JOIN LATERAL (
            SELECT count(*)::int AS n FROM jobs b WHERE b.org_id = w.org_id AND b.state = 'running'
          ) busy
          CROSS JOIN LATERAL (
            SELECT q.org_id, q.id, q.run_at, row_number() OVER (ORDER BY q.run_at, q.id)::int AS k
            FROM jobs q
            WHERE q.org_id = w.org_id AND q.state = 'queued' AND q.run_at <= now()
              AND q.kind = ANY(${[...req.kinds]}::text[])
            ORDER BY q.run_at, q.id
            LIMIT greatest(0, least(${req.limit}::int, ${cap}::int - busy.n))
          ) c
          WHERE w.org_id IS NOT NULL
        ), picked AS (
          -- Fewest running first (round-robin by org), then oldest due.
          SELECT org_id, id, turn FROM candidates ORDER BY turn, run_at, id LIMIT ${req.limit}
        ), locked AS (
          SELECT q.org_id, q.id, p.turn FROM jobs q JOIN picked p ON q.org_id = p.org_id AND q.id = p.id
          WHERE q.state = 'queued' FOR UPDATE OF q SKIP LOCKED
        )
        UPDATE jobs j SET
          state = 'running', attempts = j.attempts + 1, updated_at = now(),
          locked_by = ${req.workerId}, locked_until = now() + ${req.leaseMs} * interval '1 millisecond'
        FROM locked l
        WHERE j.org_id = l.org_id AND j.id = l.id
        RETURNING j.*, l.turn`.execute(tx);
      return r.rows
        .sort((a, b) => a.turn - b.turn || new Date(a.run_at).getTime() - new Date(b.run_at).getTime())
        .map(toJob);
    });
  }

  /** Updates a job only while `workerId` holds it (running, locked by it); false when it no longer does. */
  private held(job: Pick<Job, 'orgId' | 'id'>, workerId: string, set: UpdateObject<DB, 'jobs'>): Promise<boolean> {
    return this.asSystem(async (tx) => {
      const r = await tx
        .updateTable('jobs')
        .set(set)
        .where('org_id', '=', job.orgId)
        .where('id', '=', job.id)
        .where('state', '=', 'running')
        .where('locked_by', '=', workerId)
        .executeTakeFirst();
      return r.numUpdatedRows > 0n;
    });
  }

  async extendLease(job: Pick<Job, 'orgId' | 'id'>, workerId: string, leaseMs: number): Promise<boolean> {
    return this.held(job, workerId, {
      locked_until: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`,
      updated_at: sql<Date>`now()`,
    });
  }

  async complete(job: Pick<Job, 'orgId' | 'id'>, workerId: string): Promise<boolean> {
    return this.held(job, workerId, {
      state: 'succeeded',
      locked_until: null,
      locked_by: null,
      finished_at: sql<Date>`now()`,
      updated_at: sql<Date>`now()`,
    });
  }

  async fail(
    job: Pick<Job, 'orgId' | 'id'>,
    workerId: string,
    error: string,
    retryInMs: number | null,
  ): Promise<'queued' | 'dead' | undefined> {
    const final = retryInMs === null;
    return this.asSystem(async (tx) => {
      const r = await sql<{ state: 'queued' | 'dead' }>`
        UPDATE jobs SET
          state = CASE WHEN ${final}::boolean OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
          finished_at = CASE WHEN ${final}::boolean OR attempts >= max_attempts THEN now() END,
          run_at = now() + ${Math.max(0, Math.round(retryInMs ?? 0))} * interval '1 millisecond',
          last_error = ${error.slice(0, MAX_ERROR_CHARS)},
          locked_until = NULL, locked_by = NULL, updated_at = now()
        WHERE org_id = ${job.orgId} AND id = ${job.id} AND state = 'running' AND locked_by = ${workerId}
        RETURNING state`.execute(tx);
      return r.rows[0]?.state;
    });
  }

  async release(workerId: string): Promise<number> {
    return this.asSystem(async (tx) => {
      const r = await tx
        .updateTable('jobs')
        .set({
          state: 'queued',
          attempts: sql<number>`greatest(attempts - 1, 0)`,
          run_at: sql<Date>`now()`,
          locked_until: null,
          locked_by: null,
          updated_at: sql<Date>`now()`,
        })
        .where('state', '=', 'running')
        .where('locked_by', '=', workerId)
        .executeTakeFirst();
      return Number(r.numUpdatedRows);
    });
  }

  async pruneSucceeded(olderThanMs: number, limit: number): Promise<number> {
    return this.asSystem(async (tx) => {
      const r = await sql<{ n: number }>`
        WITH gone AS (
          DELETE FROM jobs j USING (
            SELECT org_id, id FROM jobs
            WHERE state = 'succeeded' AND finished_at < now() - ${Math.max(0, olderThanMs)} * interval '1 millisecond'
            ORDER BY finished_at LIMIT ${limit} FOR UPDATE SKIP LOCKED
          ) x WHERE j.org_id = x.org_id AND j.id = x.id RETURNING 1
        ) SELECT count(*)::int AS n FROM gone`.execute(tx);
      return r.rows[0]?.n ?? 0;
    });
  }

  async stats(): Promise<JobStats[]> {
    return this.asSystem(async (tx) => {
      const r = await sql<{ kind: string; state: JobState; n: number; oldest: number | null }>`
        SELECT kind, state, count(*)::int AS n,
          CASE WHEN state IN ('queued', 'running')
            THEN extract(epoch FROM now() - min(created_at))::float8 END AS oldest
        FROM jobs GROUP BY kind, state ORDER BY kind, state`.execute(tx);
      return r.rows.map((x) => ({
        kind: x.kind,
        state: x.state,
        count: Number(x.n),
        oldestAgeSeconds: x.oldest === null ? null : Math.max(0, Number(x.oldest)),
      }));
    });
  }
}
