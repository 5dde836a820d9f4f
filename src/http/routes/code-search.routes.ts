import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CodeSearchService } from '../../domain/code/code-search.service.ts';
import type { CodeSearchHit } from '../../domain/code/code-search.types.ts';
import { CODE_LANGUAGES } from '../../ports/code-parser.ts';
import { errorBodySchema } from '../schemas.ts';
import { contextOf } from '../types.ts';

const errorsFor = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorBodySchema]));

/** Lines of a chunk shown in a result. */
const SNIPPET_LINES = 30;
const SNIPPET_CHARS = 2_000;

const signalScore = z.object({ rank: z.number().int(), score: z.number() });
const reason = z.object({ code: z.string(), message: z.string() });
const signals = ['lexical', 'vector', 'graph'] as const;

export const codeSearchBody = z.strictObject({
  query: z.string().min(1).describe('Words, identifiers (`parseConfig`, `parse_config`) or a description'),
  mode: z
    .enum(['lexical', 'vector', 'hybrid'])
    .optional()
    .describe(
      'Default hybrid; lexical when the embedder is the builtin one (its vectors made hybrid worse than lexical)',
    ),
  limit: z.number().int().min(1).optional().describe('Default 10'),
  repos: z.array(z.string().min(1).max(100)).max(50).optional().describe('Only these repositories (ids)'),
  languages: z.array(z.enum(CODE_LANGUAGES)).max(50).optional(),
  paths: z
    .array(z.string().min(1).max(300))
    .max(50)
    .optional()
    .describe('Path globs: `src/**/*.ts`, `*.py` (any directory), `lib/` (everything below)'),
});

const hitSchema = z.object({
  chunk: z.object({
    id: z.string(),
    repo: z.object({ id: z.string(), name: z.string() }),
    path: z.string(),
    language: z.enum(CODE_LANGUAGES),
    kind: z.string().describe('The symbol kind, or `block` for a window of a file without symbols'),
    name: z.string(),
    qualifiedName: z.string().nullable(),
    symbolId: z.string().nullable(),
    part: z.number().int().describe('1 unless a large symbol was split'),
    lines: z.object({ start: z.number().int(), end: z.number().int() }).describe('One-based, inclusive'),
    doc: z.string().nullable(),
    snippet: z.string().describe(`The chunk's first ${SNIPPET_LINES} lines`),
  }),
  score: z.number(),
  signals: z.object({
    lexical: signalScore.optional(),
    vector: signalScore.optional(),
    graph: signalScore.optional(),
  }),
  via: z
    .object({ chunkId: z.string(), name: z.string(), edge: z.string() })
    .optional()
    .describe('For a hit the graph added: the hit it neighbours and the edge (CALLS, CALLED_BY, …)'),
});

export const codeSearchResponse = z.object({
  results: z.array(hitSchema),
  mode: z.enum(['lexical', 'vector', 'hybrid']),
  degraded: z.array(z.enum(signals)),
  degradedReasons: z.object({ lexical: reason.optional(), vector: reason.optional(), graph: reason.optional() }),
  lexicalRanker: z.enum(['bm25', 'ts_rank_cd']),
  model: z.string(),
});

export const presentCodeHit = (h: CodeSearchHit): z.infer<typeof hitSchema> => {
  const c = h.chunk;
  return {
    chunk: {
      id: c.id,
      repo: { id: c.repoId, name: c.repoName },
      path: c.path,
      language: c.language,
      kind: c.kind,
      name: c.name,
      qualifiedName: c.qualifiedName,
      symbolId: c.symbolId,
      part: c.part,
      lines: { start: c.startLine, end: c.endLine },
      doc: c.doc,
      snippet: c.content.split('\n').slice(0, SNIPPET_LINES).join('\n').slice(0, SNIPPET_CHARS),
    },
    score: h.score,
    signals: { ...h.signals },
    ...(h.via === undefined ? {} : { via: h.via }),
  };
};

/** Code search: POST /v1/code/search. */
export const codeSearchRoutes =
  (deps: { codeSearch: CodeSearchService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.post(
      '/v1/code/search',
      {
        config: { scope: 'code:read', action: 'code.search', rateClass: 'search' },
        schema: {
          tags: ['code'],
          summary:
            'Search code chunks (functions, methods, class headers): lexical, vector or hybrid with graph expansion',
          body: codeSearchBody,
          response: { 200: codeSearchResponse, ...errorsFor(400, 401, 403, 503) },
        },
      },
      async (req, reply) => {
        const b = req.body;
        const r = await deps.codeSearch.search(contextOf(req), {
          query: b.query,
          mode: b.mode,
          limit: b.limit,
          filter: { repoIds: b.repos, languages: b.languages, paths: b.paths },
        });
        if (r.degraded.length > 0) void reply.header('engram-degraded', r.degraded.join(','));
        return {
          ...r,
          results: r.results.map(presentCodeHit),
          degraded: [...r.degraded],
          degradedReasons: { ...r.degradedReasons },
        };
      },
    );
  };
