import { existsSync } from 'node:fs';
import { mkdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PackageIdentity, RepoManifest, RepoSourceKind } from '../domain/code/code.types.ts';
import { AppError, errors } from '../errors.ts';
import { OutboundPolicy, urlNotAllowed, type CheckedTarget } from '../net/outbound-policy.ts';
import type { Checkout, RepoWorkspace, WalkResult } from '../ports/repo-workspace.ts';
import { gitClone, gitHead, gitUpdate, parseGitUrl, type GitRemoteOptions } from './git.ts';
import { readManifest } from './manifests.ts';
import { detectPackage } from './package-identity.ts';
import { RepoFiles } from './safe-fs.ts';
import { walkRepository } from './walker.ts';

export interface LocalWorkspaceOptions {
  /** Clones go to `<dataDir>/repos/<org>/<repo>`. */
  readonly dataDir: string;
  /**
   * Real, absolute directories, none inside another; an org may register
   * local repositories under `<root>/<org slug>/` only. Empty: none.
   */
  readonly allowedRoots: readonly string[];
  /** Directories the operator gave one org each, in addition to `<root>/<slug>/`. */
  readonly orgDirs?: ReadonlyArray<{ readonly slug: string; readonly dir: string }> | undefined;
  /** The slug of an org (its directory under each root); undefined when there is no such org. */
  readonly orgSlug: (orgId: string) => Promise<string | undefined>;
  /** Where git may fetch from, and the limits of a fetch. */
  readonly git: {
    readonly protocols: readonly string[];
    readonly allowedHosts: readonly string[];
    readonly allowPrivate: boolean;
    readonly timeoutMs: number;
    readonly maxCloneBytes: number;
    readonly sshKnownHosts?: string | undefined;
    readonly sshKeyFile?: string | undefined;
  };
  /** Resolves host names for the outbound policy (tests inject answers); the system resolver by default. */
  readonly resolve?: ((host: string) => Promise<readonly string[]>) | undefined;
  readonly maxFileBytes: number;
  readonly maxFiles: number;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** As the orgs table constrains slugs: one safe path segment. */
const SLUG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

const within = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/**
 * Repositories on this server's disk. Local directories are confined per
 * org: a path (or file:// URL) must resolve, after symbolic links, to a
 * directory under `<root>/<org slug>/` for one of CODE_ALLOWED_ROOTS — the
 * slug appended to the root's real path, so a link in place of an org's
 * directory leads nowhere — or under a directory CODE_ORG_DIRS gives the org. Checked at registration and again at every run and
 * file read. Git URLs pass the outbound policy (at registration and before
 * every fetch) and are cloned under the data directory.
 */
export class LocalRepoWorkspace implements RepoWorkspace {
  private roots: Promise<string[]> | undefined;
  private readonly policy: OutboundPolicy;
  private readonly remoteOpts: GitRemoteOptions;

  constructor(private readonly opts: LocalWorkspaceOptions) {
    this.policy = new OutboundPolicy({
      protocols: opts.git.protocols,
      allowedHosts: opts.git.allowedHosts,
      allowPrivate: opts.git.allowPrivate,
      resolve: opts.resolve,
    });
    this.remoteOpts = {
      timeoutMs: opts.git.timeoutMs,
      maxBytes: opts.git.maxCloneBytes,
      sshKnownHosts: opts.git.sshKnownHosts,
      sshKeyFile: opts.git.sshKeyFile,
    };
  }

  private grants: Promise<Array<{ slug: string; dir: string }>> | undefined;

  /** CODE_ORG_DIRS on their real paths (a grant that does not exist yet is taken as written). */
  private realGrants(): Promise<Array<{ slug: string; dir: string }>> {
    this.grants ??= Promise.all(
      (this.opts.orgDirs ?? []).map(async (g) => ({
        slug: g.slug,
        dir: await realpath(g.dir).catch(() => path.resolve(g.dir)),
      })),
    );
    return this.grants;
  }

  private realRoots(): Promise<string[]> {
    this.roots ??= Promise.all(this.opts.allowedRoots.map((r) => realpath(r).catch(() => path.resolve(r)))).then(
      (roots) => {
        // The configuration refuses nested roots; links could still make two of them nest.
        for (const r of roots) {
          if (roots.some((o) => o !== r && within(r, o))) {
            throw new AppError('CONFIG_INVALID', `CODE_ALLOWED_ROOTS: ${r} lies inside another root`);
          }
        }
        return roots;
      },
    );
    return this.roots;
  }

  /** The org's directories: `<real root>/<slug>` for every root, and its CODE_ORG_DIRS (none for an unknown org). */
  private async orgDirs(orgId: string): Promise<string[]> {
    const [roots, grants] = await Promise.all([this.realRoots(), this.realGrants()]);
    const slug = roots.length === 0 && grants.length === 0 ? undefined : await this.opts.orgSlug(orgId);
    if (slug === undefined || !SLUG_RE.test(slug)) return [];
    return [...roots.map((r) => path.join(r, slug)), ...grants.filter((g) => g.slug === slug).map((g) => g.dir)];
  }

  async resolveLocalPath(orgId: string, p: string): Promise<string> {
    if ((await this.realRoots()).length === 0 && (await this.realGrants()).length === 0) {
      throw errors.forbidden(
        'Registering local paths is disabled on this server (CODE_ALLOWED_ROOTS is not set); register a git URL instead',
      );
    }
    if (!path.isAbsolute(p)) throw errors.validation('The path must be absolute');
    const dirs = await this.orgDirs(orgId);
    // First by name, so nothing outside the org's directories is even looked at; then by real path.
    if (!dirs.some((d) => within(path.resolve(p), d))) throw errors.pathNotAllowed();
    const real = await realpath(p).catch(() => undefined);
    if (real === undefined || !dirs.some((d) => within(real, d))) throw errors.pathNotAllowed();
    if (!(await stat(real).catch(() => undefined))?.isDirectory()) throw errors.pathNotAllowed();
    return real;
  }

  /** The local path a file:// URL names; 400 for a remote host or a path no file system has. */
  private fileUrlPath(url: URL): string {
    if (url.hostname !== '' && url.hostname !== 'localhost') throw urlNotAllowed('host', { scheme: 'file' });
    try {
      return fileURLToPath(url);
    } catch {
      throw errors.validation('The file:// URL does not name a local path');
    }
  }

  async validateUrl(orgId: string, raw: string): Promise<string> {
    const url = parseGitUrl(raw);
    if (url.protocol === 'file:') {
      // A file:// URL reads the server's disk like a path does: the same per-org directories.
      return pathToFileURL(await this.resolveLocalPath(orgId, this.fileUrlPath(url))).href;
    }
    return (await this.policy.check(url)).url.href;
  }

  cloneDir(orgId: string, repoId: string): string {
    if (!UUID_RE.test(orgId) || !UUID_RE.test(repoId)) throw errors.validation('ids must be UUIDs');
    return path.join(this.opts.dataDir, 'repos', orgId, repoId);
  }

  async checkout(orgId: string, repo: { id: string; sourceKind: RepoSourceKind; location: string }): Promise<Checkout> {
    let root: string;
    if (repo.sourceKind === 'path') {
      root = await this.resolveLocalPath(orgId, repo.location);
    } else {
      // Checked again before every fetch: the operator may have narrowed the policy, or the name may now resolve elsewhere.
      const url = parseGitUrl(repo.location);
      let target: CheckedTarget | undefined;
      if (url.protocol === 'file:') await this.resolveLocalPath(orgId, this.fileUrlPath(url));
      else target = await this.policy.check(url);
      const remote = { url, target };
      root = this.cloneDir(orgId, repo.id);
      try {
        if (existsSync(path.join(root, '.git'))) {
          await gitUpdate(root, remote, this.remoteOpts);
        } else {
          await rm(root, { recursive: true, force: true });
          await mkdir(path.dirname(root), { recursive: true });
          await gitClone(remote, root, this.remoteOpts);
        }
      } catch (e) {
        if (e instanceof AppError) throw e;
        throw new AppError('UNAVAILABLE', 'Could not fetch the repository (git clone/fetch failed)', { cause: e });
      }
    }
    const head = await gitHead(root);
    return { root, commit: head.commit, branch: head.branch };
  }

  walk(root: string): Promise<WalkResult> {
    return walkRepository(root, { maxFileBytes: this.opts.maxFileBytes, maxFiles: this.opts.maxFiles });
  }

  packageIdentity(root: string): Promise<PackageIdentity | undefined> {
    return detectPackage(root, this.opts.maxFileBytes);
  }

  manifest(root: string): Promise<RepoManifest> {
    return readManifest(root, this.opts.maxFileBytes);
  }

  async readTreeFile(
    orgId: string,
    repo: { id: string; sourceKind: RepoSourceKind; location: string },
    relPath: string,
  ): Promise<Uint8Array | undefined> {
    // A path repo is checked against the allowed roots again: the operator may have narrowed them since.
    const root =
      repo.sourceKind === 'path' ? await this.resolveLocalPath(orgId, repo.location) : this.cloneDir(orgId, repo.id);
    if (path.isAbsolute(relPath) || !within(path.resolve(root, relPath), root)) return undefined;
    try {
      // A capped regular file inside the tree's real path, never through a link (as the walk read it).
      const r = await (await RepoFiles.open(root)).read(relPath.split(path.sep).join('/'), this.opts.maxFileBytes);
      return 'bytes' in r ? r.bytes : undefined;
    } catch {
      return undefined;
    }
  }

  async discard(orgId: string, repoId: string): Promise<void> {
    await rm(this.cloneDir(orgId, repoId), { recursive: true, force: true });
  }
}
