import type { Job, JobFilter, JobStats, NewJob } from '../domain/jobs/job.types.ts';
import type { Page } from '../domain/memory/memory.types.ts';

/**
 * An org's view of the job queue, handed out by `withTenant` like every other
 * tenant store: enqueuing joins the caller's transaction, so a job exists if
 * and only if the write that needs it committed.
 */
export interface JobStore {
  insertJob(job: NewJob): Promise<Job>;
  /** Enqueues several jobs in one statement. */
  insertJobs(jobs: readonly NewJob[]): Promise<void>;
  findJob(id: string): Promise<Job | undefined>;
  /** Newest first; the cursor is the previous page's `nextCursor`. */
  findJobs(filter: JobFilter, limit: number, cursor: string | null): Promise<Page<Job>>;
  /**
   * Re-drives a dead job: queued, due now, attempts reset, last error kept.
   * Undefined when there is no such job; `requeued: false` (job unchanged) when it is not dead.
   */
  requeueDeadJob(id: string): Promise<{ job: Job; requeued: boolean } | undefined>;
  /** Re-drives up to `limit` dead jobs (of one kind, if given); returns how many. */
  requeueDeadJobs(kind: string | undefined, limit: number): Promise<number>;
}

/** What a worker needs when claiming: who it is, how many, for how long, which kinds it can run. */
export interface ClaimRequest {
  readonly workerId: string;
  readonly limit: number;
  readonly leaseMs: number;
  readonly kinds: readonly string[];
  /**
   * At most this many jobs of one org running at once, counted across every
   * worker (JOBS_MAX_RUNNING_PER_ORG), so one org cannot hold every slot;
   * undefined: no cap.
   */
  readonly maxRunningPerOrg?: number | undefined;
}

/**
 * The workers' side of the queue, across orgs (runs as `engram_system`).
 * Every state change of a running job names the worker holding it and does
 * nothing when that worker has lost its lease, so a stalled worker that wakes
 * up can never overwrite what another worker did since.
 *
 * Claiming is fair across orgs: a free slot goes to the org with the fewest
 * running jobs (then its oldest due job), so one org's 50 index runs cannot
 * starve another org's embed job. Claims take turns (each waits for the one
 * before it, which lasts one short statement, so the running counts are
 * exact) and never wait for a job row locked by anything else (SKIP LOCKED).
 */
export interface JobQueue {
  /**
   * First returns running jobs whose lease expired to queued (or dead, when
   * that was their last attempt), then claims up to `limit` due jobs of the
   * given kinds, round-robin by org — fewest running first, oldest due first
   * within an org, none of an org at its `maxRunningPerOrg` — returned in that
   * order: running, attempts + 1, leased until now + leaseMs.
   */
  claim(req: ClaimRequest): Promise<Job[]>;
  /** Pushes a held job's lease to now + `leaseMs` (a long run's heartbeat); false when the worker no longer holds it. */
  extendLease(job: Pick<Job, 'orgId' | 'id'>, workerId: string, leaseMs: number): Promise<boolean>;
  /** Marks a held job succeeded; false when the worker no longer holds it. */
  complete(job: Pick<Job, 'orgId' | 'id'>, workerId: string): Promise<boolean>;
  /**
   * Records a failed run: dead when it was the last attempt or `retryInMs` is
   * null (a failure a retry would meet again), else queued again `retryInMs`
   * from now. Returns the new state, or undefined when the worker no longer
   * holds the job.
   */
  fail(
    job: Pick<Job, 'orgId' | 'id'>,
    workerId: string,
    error: string,
    retryInMs: number | null,
  ): Promise<'queued' | 'dead' | undefined>;
  /** Returns the worker's running jobs to queued, due now, without counting the interrupted run. */
  release(workerId: string): Promise<number>;
  /** Deletes up to `limit` jobs that succeeded more than `olderThanMs` ago; returns how many. */
  pruneSucceeded(olderThanMs: number, limit: number): Promise<number>;
  /** Depth per kind and state across orgs, with the age of the oldest unfinished job. */
  stats(): Promise<JobStats[]>;
}
