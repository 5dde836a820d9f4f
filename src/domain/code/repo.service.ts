import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { v7 as uuidv7 } from 'uuid';
import { errors } from '../../errors.ts';
import type { RepoWorkspace } from '../../ports/repo-workspace.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import type { NewJob } from '../jobs/job.types.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import { INDEX_REPO, type IndexRepoPayload, type Repo, type RepoCounts, type RepoDependency } from './code.types.ts';

export interface RegisterRepoInput {
  readonly path?: string | undefined;
  readonly url?: string | undefined;
  readonly name?: string | undefined;
}

export interface RepoServiceDeps {
  readonly tenantDb: TenantDb;
  readonly workspace: RepoWorkspace;
  /** Other orgs' local repositories: a directory one org holds cannot be registered by another. */
  readonly system: Pick<SystemStore, 'findLocalRepoLocations'>;
  readonly jobMaxAttempts: number;
  /** Repositories one org may register (CODE_MAX_REPOS_PER_ORG); past it, 409 QUOTA_EXCEEDED. */
  readonly maxReposPerOrg: number;
  /** Called after a run was queued (and committed): wakes this process's job worker instead of waiting for its poll. */
  readonly onQueued?: (() => void) | undefined;
}

const indexRepoJob = (repoId: string, maxAttempts: number): NewJob => ({
  id: uuidv7(),
  kind: INDEX_REPO,
  payload: { repoId } satisfies IndexRepoPayload,
  maxAttempts,
});

/** The directory a stored location names on this server's disk: a path, or a file:// URL's path; else undefined. */
function localPathOf(location: string): string | undefined {
  if (path.isAbsolute(location)) return location;
  if (!location.startsWith('file:')) return undefined;
  try {
    return fileURLToPath(location);
  } catch {
    return undefined;
  }
}

const within = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/** The last segment of a path or URL, without `.git`: the default name of a repository. */
export function defaultRepoName(location: string): string {
  const trimmed = location.replace(/[/\\]+$/, '').replace(/\.git$/, '');
  const last = trimmed.split(/[/\\:]/).pop() ?? '';
  return last === '' ? 'repo' : last.slice(0, 200);
}

/**
 * The org's repository registry. Registering (or asking to re-index) stores
 * the repo and enqueues its `index_repo` job in one transaction, so the API
 * answers at once and the work happens in the background; a repo has at most
 * one pending or running job.
 */
export class RepoService {
  constructor(private readonly deps: RepoServiceDeps) {}

  async register(ctx: RequestContext, input: RegisterRepoInput): Promise<Repo> {
    const { path: dir, url } = input;
    if ((dir === undefined) === (url === undefined)) throw errors.validation('Give exactly one of `path` or `url`');
    const location =
      dir !== undefined
        ? await this.deps.workspace.resolveLocalPath(ctx.orgId, dir)
        : await this.deps.workspace.validateUrl(ctx.orgId, url ?? '');
    const local = localPathOf(location);
    if (local !== undefined) {
      // Per-org directories keep orgs apart; this holds even for rows from before them, or roots that overlap.
      const taken = (await this.deps.system.findLocalRepoLocations(ctx.orgId)).map(localPathOf);
      if (taken.some((p) => p !== undefined && (within(local, p) || within(p, local)))) throw errors.pathNotAllowed();
    }
    const name = input.name?.trim() || defaultRepoName(location);
    const repoId = uuidv7();
    const job = indexRepoJob(repoId, this.deps.jobMaxAttempts);
    const repo = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code, jobs }) => {
      const used = await code.lockRepoCount();
      const max = this.deps.maxReposPerOrg;
      if (used >= max) {
        throw errors.quotaExceeded(
          'repos',
          max,
          used,
          `The org has ${used} repositories, the most this server allows (CODE_MAX_REPOS_PER_ORG=${max}); delete one to register another`,
        );
      }
      const inserted = await code.insertRepo({
        id: repoId,
        name,
        sourceKind: dir !== undefined ? 'path' : 'url',
        location,
        indexJobId: job.id,
      });
      await jobs.insertJob(job);
      return inserted;
    });
    this.deps.onQueued?.();
    return repo;
  }

  async list(ctx: RequestContext): Promise<Repo[]> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ code }) => code.findRepos());
  }

  /**
   * The repo, with how much of it is indexed — except while a run is in
   * progress: its tables are then half rewritten, and counting them on every
   * poll of a progress bar would slow the run down (`progress` says how far
   * it is).
   */
  async get(ctx: RequestContext, id: string): Promise<{ repo: Repo; counts: RepoCounts | undefined }> {
    const r = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const repo = await code.findRepo(id);
      if (repo === undefined) return undefined;
      return { repo, counts: repo.status === 'indexing' ? undefined : await code.countRepo(id) };
    });
    if (r === undefined) throw errors.notFound('repo', id);
    return r;
  }

  /**
   * DEPENDS_ON edges between the org's repositories: one declares a
   * dependency (package.json, go.mod, Cargo.toml, pyproject, requirements)
   * on a package another provides. With a repo, only those from or to it.
   */
  async dependencies(ctx: RequestContext, repoId?: string): Promise<RepoDependency[]> {
    const r = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      if (repoId !== undefined && (await code.findRepo(repoId)) === undefined) return undefined;
      return code.findRepoDependencies(repoId);
    });
    if (r === undefined) throw errors.notFound('repo', repoId ?? '');
    return r;
  }

  /** Deletes the repo with its files, symbols and edges, and its clone if it has one. */
  async remove(ctx: RequestContext, id: string): Promise<void> {
    const repo = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const found = await code.lockRepo(id);
      if (found !== undefined) await code.deleteRepo(id);
      return found;
    });
    if (repo === undefined) throw errors.notFound('repo', id);
    if (repo.sourceKind === 'url') await this.deps.workspace.discard(ctx.orgId, repo.id);
  }

  /**
   * Queues a run unless one is already queued or running (then the repo is
   * returned as it is: the pending run will see the current tree).
   */
  async reindex(ctx: RequestContext, id: string): Promise<{ repo: Repo; queued: boolean }> {
    const r = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code, jobs }) => {
      const repo = await code.lockRepo(id);
      if (repo === undefined) return undefined;
      const current = repo.indexJobId === null ? undefined : await jobs.findJob(repo.indexJobId);
      if (current !== undefined && (current.state === 'queued' || current.state === 'running')) {
        return { repo, queued: false };
      }
      const job = indexRepoJob(repo.id, this.deps.jobMaxAttempts);
      await jobs.insertJob(job);
      const updated = await code.updateRepo(id, { status: 'queued', indexJobId: job.id });
      return { repo: updated ?? repo, queued: true };
    });
    if (r === undefined) throw errors.notFound('repo', id);
    if (r.queued) this.deps.onQueued?.();
    return r;
  }
}
