import { AppError, errors } from '../../errors.ts';
import type { CodeStore } from '../../ports/code-store.ts';
import type { RepoWorkspace } from '../../ports/repo-workspace.ts';
import type { TenantDb } from '../../ports/tenant-db.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import { parseSymbolRef } from './code-query.service.ts';
import {
  symbolNode,
  type CodeSnippet,
  type DiffImpact,
  type GraphDirection,
  type GraphHit,
  type GraphLevel,
  type GraphNode,
  type GraphNodeKind,
  type GraphTarget,
  type GraphTraversal,
  type PathStep,
  type RepoMap,
  type TraversalOptions,
} from './code-graph.types.ts';
import type { CodeSymbol, EdgeKind, Repo } from './code.types.ts';
import { rankSymbols, renderRepoMap } from './repo-map.ts';
import { parseUnifiedDiff } from './unified-diff.ts';

/** Start symbols a plain name may expand to. */
const MAX_START = 50;
/** Files of a diff considered; the rest are reported as not looked at. */
const MAX_DIFF_FILES = 1000;
/** Characters of one snippet; longer ones are cut. */
const MAX_SNIPPET_CHARS = 20_000;

interface Reached {
  readonly kind: GraphNodeKind;
  readonly depth: number;
  readonly confidence: number;
  readonly prev: string | null;
  readonly via: EdgeKind | null;
  readonly edgeConfidence: number;
}

const notFound = (what: string, value: string): AppError =>
  new AppError('NOT_FOUND', `No ${what} ${value} is indexed`, { details: { [what]: value } });

/** `./src/a.ts`, `/src/a.ts` and `src\a.ts` all mean the repository path `src/a.ts`. */
const normalizePath = (p: string): string =>
  p
    .trim()
    .replaceAll('\\', '/')
    .replace(/^(\.\/)+/, '')
    .replace(/^\/+/, '');

/** The innermost symbol whose span holds a (0-based) line. */
function innermost(symbols: readonly CodeSymbol[], line: number): CodeSymbol | undefined {
  let best: CodeSymbol | undefined;
  for (const s of symbols) {
    if (line < s.span.startLine || line > s.span.endLine) continue;
    if (
      best === undefined ||
      s.span.endLine - s.span.startLine < best.span.endLine - best.span.startLine ||
      (s.span.endLine - s.span.startLine === best.span.endLine - best.span.startLine &&
        s.span.startLine > best.span.startLine)
    ) {
      best = s;
    }
  }
  return best;
}

/**
 * Walks the org's code graph: what a symbol, file or package depends on, what
 * depends on it, and what a change would affect (`impact`, also from a
 * diff); plus a symbol's source and a ranked map of a repository.
 *
 * Traversals are breadth-first, one query per depth (each an index lookup on
 * the frontier) rather than one recursive CTE: a CTE that keeps paths to stay
 * cycle-safe enumerates every simple path, which explodes on dense graphs,
 * while BFS visits each node once, at its shortest distance, and stops at the
 * hit cap. An edge below the confidence floor is never followed, so every
 * path found has all its edges at or above it; among the shortest paths to a
 * node the one whose weakest edge is strongest is kept.
 */
/** Exactly one of `symbol`, `file` or `package` (REST query or MCP arguments): the level follows from which. */
export function graphTargetOf(q: {
  symbol?: string | undefined;
  file?: string | undefined;
  package?: string | undefined;
}): GraphTarget {
  const given = [q.symbol, q.file, q.package].filter((v) => v !== undefined).length;
  if (given !== 1) throw errors.validation('Give exactly one of `symbol`, `file` or `package`');
  if (q.symbol !== undefined) return { symbol: q.symbol };
  if (q.file !== undefined) return { file: q.file };
  return { package: q.package as string };
}

export class CodeGraphService {
  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly workspace: Pick<RepoWorkspace, 'readTreeFile'>;
    },
  ) {}

  async dependencies(ctx: RequestContext, target: GraphTarget, opts: TraversalOptions): Promise<GraphTraversal> {
    return this.traverse(ctx, target, 'dependencies', opts);
  }

  async dependents(ctx: RequestContext, target: GraphTarget, opts: TraversalOptions): Promise<GraphTraversal> {
    return this.traverse(ctx, target, 'dependents', opts);
  }

  /** Reverse-transitive dependents: what may break when the target changes. */
  async impact(ctx: RequestContext, target: GraphTarget, opts: TraversalOptions): Promise<GraphTraversal> {
    return this.traverse(ctx, target, 'dependents', opts);
  }

  /**
   * What a change affects: the diff's changed lines (old side, which the index
   * holds) are mapped to the innermost symbols around them — or to the file,
   * for lines outside any symbol — and their impact is walked at symbol level.
   */
  async impactOfDiff(
    ctx: RequestContext,
    input: { readonly repoId: string; readonly diff: string },
    opts: Omit<TraversalOptions, 'repoId'>,
  ): Promise<DiffImpact> {
    const changedFiles = parseUnifiedDiff(input.diff);
    if (changedFiles.length === 0) throw errors.validation('The diff names no changed file (expected a unified diff)');
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const repo = await code.findRepo(input.repoId);
      if (repo === undefined) throw errors.notFound('repo', input.repoId);
      const changed: Array<DiffImpact['changed'][number]> = [];
      const start = new Map<string, GraphNode>();
      for (const f of changedFiles.slice(0, MAX_DIFF_FILES)) {
        const [file] = await code.findFilesByPath(normalizePath(f.path), repo.id);
        if (file === undefined || f.added) {
          changed.push({ path: f.path, lines: f.lines.length, indexed: false, symbols: [], topLevel: false });
          continue;
        }
        const symbols = await code.findFileSymbols([file.id]);
        const hit = new Map<string, GraphNode>();
        let topLevel = false;
        for (const line of f.lines) {
          const s = innermost(symbols, line - 1);
          if (s === undefined) topLevel = true;
          else hit.set(s.id, symbolNode(s));
        }
        for (const n of hit.values()) start.set(n.id, n);
        if (topLevel) start.set(file.id, file);
        changed.push({ path: f.path, lines: f.lines.length, indexed: true, symbols: [...hit.values()], topLevel });
      }
      const impact = await this.walk(code, 'symbol', 'dependents', [...start.values()], opts);
      return { changed, impact };
    });
  }

  /** The source of the symbols `symbol` names, from the repository's tree, with `context` lines around. */
  async getCode(
    ctx: RequestContext,
    symbol: string,
    opts: { readonly repoId?: string | undefined; readonly context: number; readonly limit: number },
  ): Promise<CodeSnippet[]> {
    const found = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const symbols = await code.findDefinitions(parseSymbolRef(symbol), opts.repoId, opts.limit);
      const repos = new Map<string, Repo>();
      for (const s of symbols) {
        if (!repos.has(s.repoId)) {
          const r = await code.findRepo(s.repoId);
          if (r !== undefined) repos.set(r.id, r);
        }
      }
      return { symbols, repos };
    });
    if (found.symbols.length === 0) throw notFound('symbol', symbol);
    const decoder = new TextDecoder('utf-8');
    const snippets: CodeSnippet[] = [];
    for (const s of found.symbols) {
      const repo = found.repos.get(s.repoId);
      const bytes = repo === undefined ? undefined : await this.deps.workspace.readTreeFile(ctx.orgId, repo, s.path);
      if (bytes === undefined) continue;
      const lines = decoder.decode(bytes).split(/\r?\n/);
      const from = Math.max(0, s.span.startLine - opts.context);
      const to = Math.min(lines.length - 1, s.span.endLine + opts.context);
      let text = lines.slice(from, to + 1).join('\n');
      const truncated = text.length > MAX_SNIPPET_CHARS;
      if (truncated) text = text.slice(0, MAX_SNIPPET_CHARS);
      snippets.push({ symbol: s, startLine: from + 1, endLine: to + 1, code: text, truncated });
    }
    if (snippets.length === 0) {
      throw new AppError('NOT_FOUND', `The source of ${symbol} is no longer in the repository's tree`, {
        details: { symbol },
      });
    }
    return snippets;
  }

  /** The repository's most central symbols (PageRank over references) within `tokens` (≈ characters / 4). */
  async repoMap(ctx: RequestContext, repo: string, tokens: number): Promise<RepoMap> {
    const { found, graph } = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const r = await this.findRepo(code, repo);
      return { found: r, graph: await code.findReferenceGraph(r.id) };
    });
    const ranked = rankSymbols(graph);
    const map = renderRepoMap(ranked, tokens);
    return {
      repoId: found.id,
      repoName: found.name,
      tokens,
      symbols: map.symbols,
      text: map.text,
      totalSymbols: ranked.length,
    };
  }

  private async traverse(
    ctx: RequestContext,
    target: GraphTarget,
    direction: GraphDirection,
    opts: TraversalOptions,
  ): Promise<GraphTraversal> {
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const { level, start } = await this.resolveTarget(code, target, opts.repoId);
      return this.walk(code, level, direction, start, opts);
    });
  }

  private async resolveTarget(
    code: CodeStore,
    target: GraphTarget,
    repoId: string | undefined,
  ): Promise<{ level: GraphLevel; start: GraphNode[] }> {
    if (target.symbol !== undefined) {
      const symbols = await code.findDefinitions(parseSymbolRef(target.symbol), repoId, MAX_START);
      if (symbols.length === 0) throw notFound('symbol', target.symbol);
      return { level: 'symbol', start: symbols.map(symbolNode) };
    }
    if (target.file !== undefined) {
      const files = await code.findFilesByPath(normalizePath(target.file), repoId);
      if (files.length === 0) throw notFound('file', target.file);
      return { level: 'file', start: files };
    }
    const repo = await this.findRepo(code, target.package);
    const [node] = await code.findGraphNodes('package', [repo.id]);
    if (node === undefined) throw notFound('package', target.package);
    return { level: 'package', start: [node] };
  }

  /** A repository by id, name, package name or `manager name`. */
  private async findRepo(code: CodeStore, ref: string): Promise<Repo> {
    const byId = await code.findRepo(ref);
    if (byId !== undefined) return byId;
    const repos = await code.findRepos();
    const match =
      repos.find((r) => r.name === ref) ??
      repos.find(
        (r) => r.package !== null && (r.package.name === ref || `${r.package.manager} ${r.package.name}` === ref),
      );
    if (match === undefined) throw notFound('package', ref);
    return match;
  }

  private async walk(
    code: CodeStore,
    level: GraphLevel,
    direction: GraphDirection,
    start: readonly GraphNode[],
    opts: Omit<TraversalOptions, 'repoId'>,
  ): Promise<GraphTraversal> {
    const reached = new Map<string, Reached>();
    for (const n of start) {
      reached.set(n.id, { kind: n.kind, depth: 0, confidence: 1, prev: null, via: null, edgeConfidence: 1 });
    }
    let frontier = start.map((n) => n.id);
    let hits = 0;
    let truncated = false;
    for (let depth = 1; depth <= opts.depth && frontier.length > 0 && !truncated; depth++) {
      const steps = await code.findGraphSteps({
        level,
        direction,
        nodeIds: frontier,
        minConfidence: opts.minConfidence,
      });
      const next = new Map<string, Reached>();
      for (const s of steps) {
        const from = reached.get(s.from);
        if (from === undefined || reached.has(s.to)) continue;
        const confidence = Math.min(from.confidence, s.confidence);
        const prior = next.get(s.to);
        if (prior === undefined || confidence > prior.confidence) {
          next.set(s.to, {
            kind: s.toKind,
            depth,
            confidence,
            prev: s.from,
            via: s.kind,
            edgeConfidence: s.confidence,
          });
        }
      }
      // Strongest first, so the cap keeps the surest hits of the last depth.
      const ordered = [...next.entries()].sort((a, b) => b[1].confidence - a[1].confidence || a[0].localeCompare(b[0]));
      frontier = [];
      for (const [id, r] of ordered) {
        if (hits >= opts.limit) {
          truncated = true;
          break;
        }
        reached.set(id, r);
        frontier.push(id);
        hits += 1;
      }
    }

    const nodes = new Map(start.map((n) => [n.id, n]));
    const missing = [...reached.keys()].filter((id) => !nodes.has(id));
    for (const n of await code.findGraphNodes(level, missing)) nodes.set(n.id, n);
    const pathTo = (id: string): PathStep[] => {
      const steps: PathStep[] = [];
      for (let at: string | null = id; at !== null;) {
        const r = reached.get(at);
        const node = nodes.get(at);
        if (r === undefined || node === undefined) break;
        steps.push({ node, via: r.via, confidence: r.edgeConfidence });
        at = r.prev;
      }
      return steps.reverse();
    };
    const byDepth = new Map<number, GraphHit[]>();
    for (const [id, r] of reached) {
      const node = nodes.get(id);
      if (r.depth === 0 || node === undefined) continue;
      byDepth.set(r.depth, [
        ...(byDepth.get(r.depth) ?? []),
        { node, depth: r.depth, confidence: r.confidence, path: pathTo(id) },
      ]);
    }
    const groups = [...byDepth.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([depth, items]) => ({
        depth,
        items: items.sort(
          (a, b) =>
            b.confidence - a.confidence ||
            (a.node.path ?? a.node.name).localeCompare(b.node.path ?? b.node.name) ||
            (a.node.span?.startLine ?? -1) - (b.node.span?.startLine ?? -1),
        ),
      }));
    return {
      level,
      direction,
      start,
      depth: opts.depth,
      minConfidence: opts.minConfidence,
      byDepth: groups,
      total: groups.reduce((n, g) => n + g.items.length, 0),
      truncated,
    };
  }
}
