import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { graphTargetOf as targetOf, type CodeGraphService } from '../../domain/code/code-graph.service.ts';
import {
  GRAPH_LEVELS,
  type DiffImpact,
  type GraphHit,
  type GraphNode,
  type GraphTraversal,
} from '../../domain/code/code-graph.types.ts';
import { EDGE_KINDS } from '../../domain/code/code.types.ts';
import { errorBodySchema } from '../schemas.ts';
import { contextOf } from '../types.ts';
import { presentSymbol, symbolSchema } from './code.routes.ts';

const errorsFor = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorBodySchema]));
const tags = ['code'];

const spanSchema = symbolSchema.shape.span;

const nodeSchema = z.object({
  kind: z.enum(['symbol', 'file', 'package']),
  id: z.string(),
  name: z.string().describe('Symbol name, file path or repository name'),
  qualifiedName: z.string().describe('Qualified symbol name, file path, or the package (`npm my-lib 1.2.0`)'),
  symbolKind: z.string().nullable(),
  repo: z.object({ id: z.string(), name: z.string() }),
  path: z.string().nullable(),
  span: spanSchema.nullable(),
});
const nodeRefSchema = z.object({
  kind: z.enum(['symbol', 'file', 'package']),
  id: z.string(),
  name: z.string(),
  path: z.string().nullable(),
});
const hitSchema = z.object({
  node: nodeSchema,
  depth: z.number().int(),
  confidence: z.number().describe('The weakest edge on the path'),
  path: z
    .array(z.object({ node: nodeRefSchema, via: z.enum(EDGE_KINDS).nullable(), confidence: z.number() }))
    .describe('One shortest path, start first; `via` is the edge kind that reached each step'),
});
export const traversalSchema = z.object({
  level: z.enum(GRAPH_LEVELS),
  direction: z.enum(['dependencies', 'dependents']),
  start: z.array(nodeSchema),
  depth: z.number().int(),
  minConfidence: z.number(),
  total: z.number().int(),
  truncated: z.boolean().describe('The hit cap (`limit`) stopped the walk'),
  byDepth: z.array(z.object({ depth: z.number().int(), items: z.array(hitSchema) })),
});

const presentNode = (n: GraphNode): z.infer<typeof nodeSchema> => ({
  kind: n.kind,
  id: n.id,
  name: n.name,
  qualifiedName: n.qualifiedName,
  symbolKind: n.symbolKind,
  repo: { id: n.repoId, name: n.repoName },
  path: n.path,
  span: n.span,
});

const presentHit = (h: GraphHit): z.infer<typeof hitSchema> => ({
  node: presentNode(h.node),
  depth: h.depth,
  confidence: h.confidence,
  path: h.path.map((s) => ({
    node: { kind: s.node.kind, id: s.node.id, name: s.node.qualifiedName, path: s.node.path },
    via: s.via,
    confidence: s.confidence,
  })),
});

export const presentTraversal = (t: GraphTraversal): z.infer<typeof traversalSchema> => ({
  level: t.level,
  direction: t.direction,
  start: t.start.map(presentNode),
  depth: t.depth,
  minConfidence: t.minConfidence,
  total: t.total,
  truncated: t.truncated,
  byDepth: t.byDepth.map((g) => ({ depth: g.depth, items: g.items.map(presentHit) })),
});

const presentDiffImpact = (d: DiffImpact) => ({
  changed: d.changed.map((c) => ({ ...c, symbols: c.symbols.map(presentNode) })),
  impact: presentTraversal(d.impact),
});

const repoFilter = z.string().min(1).max(100).optional().describe('Only start from this repository (id)');
const minConfidence = z.coerce
  .number()
  .min(0)
  .max(1)
  .default(0.5)
  .describe('Edges below this confidence are not followed (every edge on a path is at least this sure)');
const limit = z.coerce.number().int().min(1).max(5000).default(500).describe('At most this many hits');

const targetQuery = (defaultDepth: number) =>
  z.strictObject({
    symbol: z.string().trim().min(1).max(1000).optional().describe('A plain name, a qualified name or a SCIP id'),
    file: z.string().trim().min(1).max(4096).optional().describe('A repository path (`src/util.ts`)'),
    package: z
      .string()
      .trim()
      .min(1)
      .max(300)
      .optional()
      .describe('A repository: id, name, or its package name (`my-lib`, `npm my-lib`)'),
    repo: repoFilter,
    depth: z.coerce.number().int().min(1).max(10).default(defaultDepth),
    minConfidence,
    limit,
  });

const optsOf = (q: { repo?: string | undefined; depth: number; minConfidence: number; limit: number }) => ({
  repoId: q.repo,
  depth: q.depth,
  minConfidence: q.minConfidence,
  limit: q.limit,
});

const LEVEL_NOTE =
  '`symbol` walks calls, references, inheritance and containment; `file` any edge between two files; `package` edges between repositories.';

/** Graph queries over the org's code: dependencies, dependents, impact (also of a diff), source, repo map. */
export const codeGraphRoutes =
  (deps: { graph: CodeGraphService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.get(
      '/v1/code/impact',
      {
        config: { scope: 'code:read', action: 'code.impact', rateClass: 'search' },
        schema: {
          tags,
          summary: 'What a change to a symbol, file or package may affect: reverse-transitive dependents by depth',
          description: `${LEVEL_NOTE} Each hit has one shortest path and the weakest confidence on it.`,
          querystring: targetQuery(5),
          response: { 200: traversalSchema, ...errorsFor(400, 401, 403, 404) },
        },
      },
      async (req) => {
        const q = req.query;
        const t = await deps.graph.impact(contextOf(req), targetOf(q), optsOf(q));
        return presentTraversal(t);
      },
    );

    app.post(
      '/v1/code/impact/diff',
      {
        config: { scope: 'code:read', action: 'code.impact_diff', rateClass: 'search' },
        schema: {
          tags,
          summary: 'What a change affects, from a unified diff against the indexed tree (`git diff` output)',
          body: z.strictObject({
            repo: z.string().min(1).max(100).describe('The repository (id) the diff applies to'),
            diff: z.string().min(1).max(5_000_000),
            depth: z.number().int().min(1).max(10).default(5),
            minConfidence: z.number().min(0).max(1).default(0.5),
            limit: z.number().int().min(1).max(5000).default(500),
          }),
          response: {
            200: z.object({
              changed: z.array(
                z.object({
                  path: z.string(),
                  lines: z.number().int().describe('Changed lines (old side)'),
                  indexed: z.boolean().describe('False for files new in the diff or not in the index'),
                  symbols: z.array(nodeSchema).describe('The innermost symbols around changed lines'),
                  topLevel: z.boolean().describe('A changed line lies outside every symbol'),
                }),
              ),
              impact: traversalSchema,
            }),
            ...errorsFor(400, 401, 403, 404),
          },
        },
      },
      async (req) => {
        const b = req.body;
        const r = await deps.graph.impactOfDiff(contextOf(req), { repoId: b.repo, diff: b.diff }, b);
        return presentDiffImpact(r);
      },
    );

    for (const direction of ['dependencies', 'dependents'] as const) {
      app.get(
        `/v1/code/${direction}`,
        {
          config: { scope: 'code:read', action: `code.${direction}`, rateClass: 'search' },
          schema: {
            tags,
            summary:
              direction === 'dependencies'
                ? 'What a symbol, file or package uses, to `depth` (default 1: direct)'
                : 'What uses a symbol, file or package, to `depth` (default 1: direct)',
            description: LEVEL_NOTE,
            querystring: targetQuery(1),
            response: { 200: traversalSchema, ...errorsFor(400, 401, 403, 404) },
          },
        },
        async (req) => {
          const q = req.query;
          const t = await deps.graph[direction](contextOf(req), targetOf(q), optsOf(q));
          return presentTraversal(t);
        },
      );
    }

    app.get(
      '/v1/code/code',
      {
        config: { scope: 'code:read', action: 'code.code', rateClass: 'search' },
        schema: {
          tags,
          summary: 'The source of a symbol from the repository’s tree, with `context` lines around it',
          querystring: z.strictObject({
            symbol: z.string().trim().min(1).max(1000).describe('A plain name, a qualified name or a SCIP id'),
            repo: repoFilter,
            context: z.coerce.number().int().min(0).max(50).default(0),
            limit: z.coerce.number().int().min(1).max(20).default(5),
          }),
          response: {
            200: z.object({
              items: z.array(
                z.object({
                  symbol: symbolSchema,
                  startLine: z.number().int().describe('1-based, inclusive'),
                  endLine: z.number().int(),
                  code: z.string(),
                  truncated: z.boolean().describe('Cut at 20,000 characters'),
                }),
              ),
            }),
            ...errorsFor(400, 401, 403, 404),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const items = await deps.graph.getCode(contextOf(req), q.symbol, {
          repoId: q.repo,
          context: q.context,
          limit: q.limit,
        });
        return { items: items.map((s) => ({ ...s, symbol: presentSymbol(s.symbol) })) };
      },
    );

    app.get(
      '/v1/code/repo-map',
      {
        config: { scope: 'code:read', action: 'code.repo_map', rateClass: 'search' },
        schema: {
          tags,
          summary:
            'A repository’s most central symbols (PageRank over references), as signatures within a token budget',
          querystring: z.strictObject({
            repo: z.string().min(1).max(300).describe('The repository: id or name'),
            tokens: z.coerce.number().int().min(50).max(100_000).default(1024).describe('≈ characters / 4'),
          }),
          response: {
            200: z.object({
              repo: z.object({ id: z.string(), name: z.string() }),
              tokens: z.number().int(),
              totalSymbols: z.number().int(),
              symbols: z.array(z.object({ symbol: symbolSchema, rank: z.number() })),
              text: z.string(),
            }),
            ...errorsFor(400, 401, 403, 404),
          },
        },
      },
      async (req) => {
        const m = await deps.graph.repoMap(contextOf(req), req.query.repo, req.query.tokens);
        return {
          repo: { id: m.repoId, name: m.repoName },
          tokens: m.tokens,
          totalSymbols: m.totalSymbols,
          symbols: m.symbols.map((r) => ({ symbol: presentSymbol(r.symbol), rank: r.rank })),
          text: m.text,
        };
      },
    );
  };
