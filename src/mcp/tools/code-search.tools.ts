import { z } from 'zod';
import type { CodeSearchService } from '../../domain/code/code-search.service.ts';
import type { CodeSearchHit } from '../../domain/code/code-search.types.ts';
import type { RequestContext } from '../../domain/tenancy/tenancy.types.ts';
import { CODE_LANGUAGES } from '../../ports/code-parser.ts';
import { clip, defineTool, type ToolDef } from '../tool.ts';

/** Lines of each hit's code in the text an LLM reads. */
const TEXT_LINES = 12;

const hitOut = z.object({
  path: z.string(),
  repo: z.object({ id: z.string(), name: z.string() }),
  language: z.string(),
  kind: z.string(),
  name: z.string(),
  qualifiedName: z.string().nullable(),
  lines: z.object({ start: z.number().int(), end: z.number().int() }),
  snippet: z.string(),
  score: z.number(),
  signals: z.record(z.string(), z.object({ rank: z.number().int(), score: z.number() })),
  via: z.object({ chunkId: z.string(), name: z.string(), edge: z.string() }).optional(),
});

const present = (h: CodeSearchHit): z.infer<typeof hitOut> => ({
  path: h.chunk.path,
  repo: { id: h.chunk.repoId, name: h.chunk.repoName },
  language: h.chunk.language,
  kind: h.chunk.kind,
  name: h.chunk.name,
  qualifiedName: h.chunk.qualifiedName,
  lines: { start: h.chunk.startLine, end: h.chunk.endLine },
  snippet: h.chunk.content.split('\n').slice(0, 30).join('\n'),
  score: h.score,
  signals: { ...h.signals },
  ...(h.via === undefined ? {} : { via: h.via }),
});

/** `search_code`: the MCP face of POST /v1/code/search. */
export function codeSearchTools(deps: {
  codeSearch: CodeSearchService;
  maxLimit: number;
}): Array<ToolDef<RequestContext>> {
  return [
    defineTool({
      name: 'search_code',
      title: 'Search code',
      description:
        'Find functions, methods and classes in the indexed repositories by identifiers (camelCase and snake_case are split) or a description. Hybrid mode fuses keyword, vector and call-graph neighbours; filter by repository, language or path glob. Each result gives path, lines and which signals found it.',
      scope: 'code:read',
      rateClass: 'search',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({
        query: z.string().min(1).max(2000),
        mode: z
          .enum(['hybrid', 'lexical', 'vector'])
          .optional()
          .describe('Default hybrid; lexical when the server embeds with its builtin hashing embedder'),
        repos: z.array(z.string().min(1).max(100)).max(50).optional().describe('Repository ids'),
        languages: z.array(z.enum(CODE_LANGUAGES)).max(50).optional(),
        paths: z.array(z.string().min(1).max(300)).max(50).optional().describe('Path globs, e.g. src/**/*.ts'),
        limit: z.number().int().min(1).max(deps.maxLimit).optional(),
      }),
      output: z.object({
        results: z.array(hitOut),
        mode: z.string(),
        degraded: z.array(z.string()),
      }),
      run: async (ctx, a) => {
        const r = await deps.codeSearch.search(ctx, {
          query: a.query,
          mode: a.mode,
          limit: a.limit ?? 10,
          filter: { repoIds: a.repos, languages: a.languages, paths: a.paths },
        });
        const results = r.results.map(present);
        const head =
          r.degraded.length > 0
            ? `${results.length} results (degraded: ${r.degraded.join(', ')} unavailable)`
            : `${results.length} results`;
        const body = results.map((h, i) => {
          const why = Object.entries(h.signals)
            .map(([s, v]) => `${s} #${v.rank}`)
            .join(', ');
          const via = h.via === undefined ? '' : ` (${h.via.edge} ${h.via.name})`;
          const code = h.snippet.split('\n').slice(0, TEXT_LINES).join('\n');
          return `${i + 1}. ${h.repo.name}:${h.path}:${h.lines.start}-${h.lines.end} ${h.kind} ${h.qualifiedName ?? h.name} [${why}]${via}\n${clip(code, 1_500)}`;
        });
        return {
          structured: { results, mode: r.mode, degraded: [...r.degraded] },
          text: [head, ...body].join('\n\n'),
        };
      },
    }),
  ];
}
