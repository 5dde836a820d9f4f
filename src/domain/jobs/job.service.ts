import { errors } from '../../errors.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import type { Page } from '../memory/memory.types.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import type { Job, JobFilter } from './job.types.ts';

/** Dead jobs re-driven per transaction by {@link JobService.retryDead}. */
const REQUEUE_BATCH = 1_000;

/** An org's background jobs: list them, look at one, re-drive dead ones. */
export class JobService {
  constructor(private readonly deps: { readonly tenantDb: TenantDb }) {}

  async list(ctx: RequestContext, filter: JobFilter, limit: number, cursor: string | null): Promise<Page<Job>> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ jobs }) => jobs.findJobs(filter, limit, cursor));
  }

  async get(ctx: RequestContext, id: string): Promise<Job> {
    const job = await this.deps.tenantDb.withTenant(ctx.orgId, ({ jobs }) => jobs.findJob(id));
    if (job === undefined) throw errors.notFound('job', id);
    return job;
  }

  /** Re-drives a dead job (queued, attempts reset); any other state is a conflict. */
  async retry(ctx: RequestContext, id: string): Promise<Job> {
    const r = await this.deps.tenantDb.withTenant(ctx.orgId, ({ jobs }) => jobs.requeueDeadJob(id));
    if (r === undefined) throw errors.notFound('job', id);
    if (!r.requeued) {
      throw errors.conflict(`Job ${id} is ${r.job.state}; only dead jobs can be retried`, { state: r.job.state });
    }
    return r.job;
  }

  /** Re-drives every dead job of the org (of one kind, if given); returns how many. */
  async retryDead(ctx: RequestContext, kind?: string): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.deps.tenantDb.withTenant(ctx.orgId, ({ jobs }) => jobs.requeueDeadJobs(kind, REQUEUE_BATCH));
      total += n;
      if (n < REQUEUE_BATCH) return total;
    }
  }
}
