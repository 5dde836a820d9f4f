import { z } from 'zod';
import { graphTargetOf as targetOf, type CodeGraphService } from '../../domain/code/code-graph.service.ts';
import type { GraphHit, GraphNode, GraphTraversal } from '../../domain/code/code-graph.types.ts';
import type { CodeQueryService } from '../../domain/code/code-query.service.ts';
import type { CodeReference, CodeSymbol } from '../../domain/code/code.types.ts';
import type { RequestContext } from '../../domain/tenancy/tenancy.types.ts';
import { errors } from '../../errors.ts';
import { SYMBOL_KINDS } from '../../ports/code-parser.ts';
import { clip, defineTool, type ToolDef } from '../tool.ts';

/*
 * Code intelligence for agents: the same services as /v1/code, answered with
 * structured content plus a compact text (one line per symbol or hit, with
 * `path:line`, 1-based, so an agent can open the place).
 */

const span = z.object({
  startLine: z.number().int(),
  startColumn: z.number().int(),
  endLine: z.number().int(),
  endColumn: z.number().int(),
});
const symbolOut = z.object({
  id: z.string(),
  symbol: z.string().describe('SCIP id'),
  name: z.string(),
  qualifiedName: z.string(),
  kind: z.string(),
  repo: z.object({ id: z.string(), name: z.string() }),
  path: z.string(),
  span: span.describe('Zero-based lines and columns'),
  signature: z.string(),
  doc: z.string().nullable(),
});
const nodeOut = z.object({
  kind: z.enum(['symbol', 'file', 'package']),
  id: z.string(),
  name: z.string(),
  qualifiedName: z.string(),
  repo: z.object({ id: z.string(), name: z.string() }),
  path: z.string().nullable(),
  line: z.number().int().nullable().describe('1-based'),
});
const hitOut = z.object({
  node: nodeOut,
  depth: z.number().int(),
  confidence: z.number(),
  path: z.array(z.object({ name: z.string(), via: z.string().nullable(), confidence: z.number() })),
});
const traversalOut = z.object({
  level: z.enum(['symbol', 'file', 'package']),
  direction: z.enum(['dependencies', 'dependents']),
  start: z.array(nodeOut),
  depth: z.number().int(),
  minConfidence: z.number(),
  total: z.number().int(),
  truncated: z.boolean(),
  byDepth: z.array(z.object({ depth: z.number().int(), items: z.array(hitOut) })),
});

const presentSymbol = (s: CodeSymbol): z.infer<typeof symbolOut> => ({
  id: s.id,
  symbol: s.scipSymbol,
  name: s.name,
  qualifiedName: s.qualifiedName,
  kind: s.kind,
  repo: { id: s.repoId, name: s.repoName },
  path: s.path,
  span: s.span,
  signature: s.signature,
  doc: s.doc,
});
const presentNode = (n: GraphNode): z.infer<typeof nodeOut> => ({
  kind: n.kind,
  id: n.id,
  name: n.name,
  qualifiedName: n.qualifiedName,
  repo: { id: n.repoId, name: n.repoName },
  path: n.path,
  line: n.span === null ? null : n.span.startLine + 1,
});
const presentHit = (h: GraphHit): z.infer<typeof hitOut> => ({
  node: presentNode(h.node),
  depth: h.depth,
  confidence: h.confidence,
  path: h.path.map((s) => ({ name: s.node.qualifiedName, via: s.via, confidence: s.confidence })),
});
const presentTraversal = (t: GraphTraversal): z.infer<typeof traversalOut> => ({
  level: t.level,
  direction: t.direction,
  start: t.start.map(presentNode),
  depth: t.depth,
  minConfidence: t.minConfidence,
  total: t.total,
  truncated: t.truncated,
  byDepth: t.byDepth.map((g) => ({ depth: g.depth, items: g.items.map(presentHit) })),
});

const where = (path: string | null, line: number | undefined): string =>
  path === null ? '' : line === undefined ? path : `${path}:${line + 1}`;
const symbolLine = (s: CodeSymbol): string =>
  `${s.kind} ${s.qualifiedName}  ${where(s.path, s.span.startLine)} [${s.repoName}]${s.signature === '' ? '' : `\n    ${clip(s.signature, 200)}`}`;
const nodeLabel = (n: GraphNode): string =>
  n.kind === 'symbol'
    ? `${n.symbolKind ?? 'symbol'} ${n.qualifiedName}  ${where(n.path, n.span?.startLine)}`
    : n.kind === 'file'
      ? `file ${n.name} [${n.repoName}]`
      : `package ${n.qualifiedName} [${n.repoName}]`;

/** One line per hit, grouped by depth; from depth 2 on, the path that reached it. */
function traversalText(t: GraphTraversal, what: string): string {
  const head = `${what} of ${t.start.map((n) => n.qualifiedName).join(', ')} (${t.level} level, depth ≤ ${t.depth}, confidence ≥ ${t.minConfidence}): ${t.total} found${t.truncated ? ' (truncated)' : ''}.`;
  const groups = t.byDepth.map(
    (g) =>
      `depth ${g.depth}:\n${g.items
        .map((h) => {
          const last = h.path[h.path.length - 1];
          const via = h.depth > 1 ? `  via ${h.path.map((s) => s.node.name).join(' → ')}` : '';
          return `  ${nodeLabel(h.node)}  (${last?.via ?? ''} ${h.confidence})${via}`;
        })
        .join('\n')}`,
  );
  return [head, ...groups].join('\n');
}

const refLine = (r: CodeReference): string =>
  `${r.kind} ${r.confidence}  ${where(r.path, r.span?.startLine)}${r.enclosing === null ? '' : ` in ${r.enclosing.qualifiedName}`} → ${r.target.qualifiedName}`;

const symbolArg = z
  .string()
  .trim()
  .min(1)
  .max(1000)
  .describe('A plain name, a qualified name (Parser.run) or a SCIP id');
const repoArg = z.string().min(1).max(100).describe('Only this repository (id)');
const targetArgs = {
  symbol: symbolArg.optional(),
  file: z.string().trim().min(1).max(4096).optional().describe('A repository path, e.g. src/util.ts'),
  package: z.string().trim().min(1).max(300).optional().describe('A repository id or name, or its package name'),
  repo: repoArg.optional(),
  depth: z.number().int().min(1).max(10).optional(),
  minConfidence: z
    .number()
    .min(0)
    .max(1)
    .optional()
    .describe('Follow only edges at least this sure (default 0.5: every resolved edge)'),
  limit: z.number().int().min(1).max(5000).optional().describe('At most this many hits (default 500)'),
};

export function codeTools(deps: { query: CodeQueryService; graph: CodeGraphService }): Array<ToolDef<RequestContext>> {
  const read = { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false } as const;
  const traversalTool = (
    name: 'get_dependencies' | 'get_dependents',
    direction: 'dependencies' | 'dependents',
  ): ToolDef<RequestContext> =>
    defineTool({
      name,
      title: direction === 'dependencies' ? 'Get dependencies' : 'Get dependents',
      description:
        direction === 'dependencies'
          ? 'What a symbol, file or package (repository) uses: give exactly one of symbol, file or package; depth 1 (default) is direct dependencies.'
          : 'What uses a symbol, file or package (repository): give exactly one of symbol, file or package; depth 1 (default) is direct dependents.',
      scope: 'code:read',
      hints: read,
      input: z.strictObject(targetArgs),
      output: traversalOut,
      run: async (ctx: RequestContext, a) => {
        const t = await deps.graph[direction](ctx, targetOf(a), {
          repoId: a.repo,
          depth: a.depth ?? 1,
          minConfidence: a.minConfidence ?? 0.5,
          limit: a.limit ?? 500,
        });
        return {
          structured: presentTraversal(t),
          text: traversalText(t, direction === 'dependencies' ? 'Dependencies' : 'Dependents'),
        };
      },
    });

  return [
    defineTool({
      name: 'find_symbol',
      title: 'Find symbol',
      description:
        'Find functions, classes, methods, types… by name across the org’s indexed repositories: case-insensitive, exact names first, then prefixes, then substrings.',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({
        query: z.string().trim().min(1).max(200).describe('A name or part of one, or a qualified name'),
        kind: z.enum(SYMBOL_KINDS).optional(),
        repo: repoArg.optional(),
        limit: z.number().int().min(1).max(200).optional(),
      }),
      output: z.object({ items: z.array(symbolOut) }),
      run: async (ctx, a) => {
        const items = await deps.query.findSymbols(ctx, {
          q: a.query,
          kind: a.kind,
          repoId: a.repo,
          limit: a.limit ?? 20,
        });
        return {
          structured: { items: items.map(presentSymbol) },
          text: items.length === 0 ? 'No symbols match.' : items.map(symbolLine).join('\n'),
        };
      },
    }),
    defineTool({
      name: 'get_definition',
      title: 'Get definition',
      description: 'Where a symbol is defined, with its signature and doc comment.',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({ symbol: symbolArg, repo: repoArg.optional() }),
      output: z.object({ items: z.array(symbolOut) }),
      run: async (ctx, a) => {
        const items = await deps.query.getDefinition(ctx, a.symbol, a.repo);
        const text =
          items.length === 0
            ? `No definition of ${a.symbol}.`
            : items
                .map((s) => `${symbolLine(s)}${s.doc === null ? '' : `\n    ${clip(s.doc.replace(/\s+/g, ' '), 300)}`}`)
                .join('\n');
        return { structured: { items: items.map(presentSymbol) }, text };
      },
    }),
    defineTool({
      name: 'find_references',
      title: 'Find references',
      description:
        'Who calls, references, extends or implements a symbol, strongest resolution first (confidence 1 … 0.5).',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({
        symbol: symbolArg,
        repo: repoArg.optional(),
        limit: z.number().int().min(1).max(1000).optional(),
      }),
      output: z.object({
        symbols: z.array(symbolOut),
        items: z.array(
          z.object({
            kind: z.string(),
            confidence: z.number(),
            path: z.string(),
            line: z.number().int().nullable().describe('1-based'),
            enclosing: z.string().nullable(),
            target: z.string(),
          }),
        ),
      }),
      run: async (ctx, a) => {
        const r = await deps.query.findReferences(ctx, a.symbol, { repoId: a.repo, limit: a.limit ?? 100 });
        return {
          structured: {
            symbols: r.symbols.map(presentSymbol),
            items: r.references.map((x) => ({
              kind: x.kind,
              confidence: x.confidence,
              path: x.path,
              line: x.span === null ? null : x.span.startLine + 1,
              enclosing: x.enclosing?.qualifiedName ?? null,
              target: x.target.qualifiedName,
            })),
          },
          text:
            r.symbols.length === 0
              ? `No symbol ${a.symbol}.`
              : r.references.length === 0
                ? `No references to ${a.symbol}.`
                : r.references.map(refLine).join('\n'),
        };
      },
    }),
    traversalTool('get_dependencies', 'dependencies'),
    traversalTool('get_dependents', 'dependents'),
    defineTool({
      name: 'impact',
      title: 'Impact',
      description:
        'What a change may break: everything that depends, directly or transitively, on a symbol, file or package — or on what a unified diff (git diff) changes — grouped by depth, each with the path that reaches it and its confidence. Give exactly one of symbol, file, package or diff (diff needs repo).',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({
        ...targetArgs,
        diff: z.string().min(1).max(5_000_000).optional().describe('A unified diff against the indexed tree'),
      }),
      output: traversalOut.extend({
        changed: z
          .array(
            z.object({
              path: z.string(),
              lines: z.number().int(),
              indexed: z.boolean(),
              symbols: z.array(nodeOut),
              topLevel: z.boolean(),
            }),
          )
          .optional()
          .describe('With a diff: the changed files and the symbols around the changed lines'),
      }),
      run: async (ctx, a) => {
        const opts = { depth: a.depth ?? 5, minConfidence: a.minConfidence ?? 0.5, limit: a.limit ?? 500 };
        if (a.diff !== undefined) {
          if (a.symbol !== undefined || a.file !== undefined || a.package !== undefined) {
            throw errors.validation('Give exactly one of `symbol`, `file`, `package` or `diff`');
          }
          if (a.repo === undefined) throw errors.validation('A diff needs `repo`: the repository it applies to');
          const d = await deps.graph.impactOfDiff(ctx, { repoId: a.repo, diff: a.diff }, opts);
          const changed = d.changed.map((c) => ({ ...c, symbols: c.symbols.map(presentNode) }));
          const lines = d.changed.map(
            (c) =>
              `changed ${c.path}: ${c.indexed ? [...c.symbols.map((s) => s.qualifiedName), ...(c.topLevel ? ['(top level)'] : [])].join(', ') || '(no symbol)' : '(not indexed)'}`,
          );
          return {
            structured: { ...presentTraversal(d.impact), changed },
            text: [...lines, traversalText(d.impact, 'Impact')].join('\n'),
          };
        }
        const t = await deps.graph.impact(ctx, targetOf(a), { ...opts, repoId: a.repo });
        return { structured: presentTraversal(t), text: traversalText(t, 'Impact') };
      },
    }),
    defineTool({
      name: 'get_code',
      title: 'Get code',
      description:
        'The source code of a symbol (by name, qualified name or SCIP id) from the repository, with optional context lines.',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({
        symbol: symbolArg,
        repo: repoArg.optional(),
        context: z.number().int().min(0).max(50).optional().describe('Lines before and after (default 0)'),
        limit: z.number().int().min(1).max(20).optional().describe('At most this many definitions (default 3)'),
      }),
      output: z.object({
        items: z.array(
          z.object({
            symbol: symbolOut,
            startLine: z.number().int(),
            endLine: z.number().int(),
            code: z.string(),
            truncated: z.boolean(),
          }),
        ),
      }),
      run: async (ctx, a) => {
        const items = await deps.graph.getCode(ctx, a.symbol, {
          repoId: a.repo,
          context: a.context ?? 0,
          limit: a.limit ?? 3,
        });
        return {
          structured: { items: items.map((s) => ({ ...s, symbol: presentSymbol(s.symbol) })) },
          text: items
            .map(
              (s) =>
                `${s.symbol.path}:${s.startLine}-${s.endLine} (${s.symbol.kind} ${s.symbol.qualifiedName})\n${s.code}${s.truncated ? '\n…' : ''}`,
            )
            .join('\n\n'),
          resourceId: items[0]?.symbol.id,
        };
      },
    }),
    defineTool({
      name: 'repo_map',
      title: 'Repository map',
      description:
        'A map of a repository for orientation: its most central symbols (PageRank over the reference graph) as file headers and signatures, within a token budget.',
      scope: 'code:read',
      hints: read,
      input: z.strictObject({
        repo: z.string().min(1).max(300).describe('The repository: id or name'),
        tokens: z.number().int().min(50).max(100_000).optional().describe('Budget, ≈ characters / 4 (default 1024)'),
      }),
      output: z.object({
        repo: z.object({ id: z.string(), name: z.string() }),
        tokens: z.number().int(),
        totalSymbols: z.number().int(),
        symbols: z.array(z.object({ qualifiedName: z.string(), path: z.string(), rank: z.number() })),
        text: z.string(),
      }),
      run: async (ctx, a) => {
        const m = await deps.graph.repoMap(ctx, a.repo, a.tokens ?? 1024);
        return {
          structured: {
            repo: { id: m.repoId, name: m.repoName },
            tokens: m.tokens,
            totalSymbols: m.totalSymbols,
            symbols: m.symbols.map((r) => ({
              qualifiedName: r.symbol.qualifiedName,
              path: r.symbol.path,
              rank: r.rank,
            })),
            text: m.text,
          },
          text: m.text === '' ? `No symbols indexed in ${m.repoName}.` : m.text,
          resourceId: m.repoId,
        };
      },
    }),
  ];
}
