import type { PackageIdentity, RepoManifest, RepoSourceKind } from '../domain/code/code.types.ts';

/** A file the walk found: `path` is posix and relative to the repository root. */
export interface WalkedFile {
  readonly path: string;
  readonly absPath: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface WalkResult {
  /** In path order. */
  readonly files: readonly WalkedFile[];
  readonly skippedTooLarge: number;
  readonly skippedBinary: number;
  /** Symbolic links and special files (FIFOs, devices) left out: the walk never follows or opens them. */
  readonly skippedLinks: number;
  /** The walk stopped at the file cap. */
  readonly truncated: boolean;
  /**
   * Files a module resolver would read by itself (package.json, tsconfig*.json, jsconfig.json, also
   * in node_modules) that are links, special files or over the size cap: while there are any, the
   * repository is resolved without the JS/TS module resolver.
   */
  readonly unsafeResolverInputs: readonly string[];
  /**
   * A walked file's content, read only if it is still a regular file inside
   * the repository's real path and within the size cap; undefined otherwise
   * (it changed since the walk, or is gone).
   */
  readonly read: (file: WalkedFile) => Promise<Uint8Array | undefined>;
}

/** A repository's tree on local disk, with what git says about it (undefined when it is not a git work tree). */
export interface Checkout {
  readonly root: string;
  readonly commit: string | undefined;
  readonly branch: string | undefined;
}

/**
 * Where repositories live on the server's disk, and the only way the code
 * domain touches the file system or git: local paths are confined to each
 * org's directories under the configured roots, URLs pass the outbound
 * policy and are cloned under the data directory.
 */
export interface RepoWorkspace {
  /**
   * The real path of a directory an org asked to register: it must resolve,
   * after symbolic links, to a directory under `<root>/<org slug>/` for one of
   * the allowed roots. PATH_NOT_ALLOWED otherwise — one answer whether the
   * path is another org's, missing or not a directory; FORBIDDEN when no roots
   * are configured.
   */
  resolveLocalPath(orgId: string, path: string): Promise<string>;
  /**
   * The URL, normalized, when the org may fetch it: network URLs pass the
   * outbound policy (URL_NOT_ALLOWED otherwise), file:// URLs name a directory
   * `resolveLocalPath` accepts (and are returned with its real path).
   */
  validateUrl(orgId: string, url: string): Promise<string>;
  /** Makes the tree current: a local path is used in place; a URL is cloned, or fetched when cloned before. */
  checkout(orgId: string, repo: { id: string; sourceKind: RepoSourceKind; location: string }): Promise<Checkout>;
  /** Every file to consider, honouring .gitignore files and skipping VCS, vendored, binary and oversized files. */
  walk(root: string): Promise<WalkResult>;
  /** The package the root declares (package.json, go.mod, Cargo.toml, pyproject.toml); undefined when none. */
  packageIdentity(root: string): Promise<PackageIdentity | undefined>;
  /** What the manifests declare: the root identity, the packages provided (root, npm workspaces) and the dependencies. */
  manifest(root: string): Promise<RepoManifest>;
  /**
   * A file of the repository's tree as last checked out (no fetch), by its
   * repository path; undefined when it is gone or the path leaves the tree.
   */
  readTreeFile(
    orgId: string,
    repo: { id: string; sourceKind: RepoSourceKind; location: string },
    path: string,
  ): Promise<Uint8Array | undefined>;
  /** Deletes a repository's clone, if any. */
  discard(orgId: string, repoId: string): Promise<void>;
}
