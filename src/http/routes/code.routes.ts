import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CodeQueryService } from '../../domain/code/code-query.service.ts';
import type { RepoService } from '../../domain/code/repo.service.ts';
import {
  EDGE_KINDS,
  INDEX_PHASES,
  REPO_SOURCE_KINDS,
  REPO_STATUSES,
  type CodeReference,
  type CodeSymbol,
  type Repo,
  type RepoCounts,
} from '../../domain/code/code.types.ts';
import { CODE_LANGUAGES, SYMBOL_KINDS } from '../../ports/code-parser.ts';
import { errorBodySchema, idParams } from '../schemas.ts';
import { contextOf } from '../types.ts';

const errorsFor = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorBodySchema]));
const repoTags = ['repos'];
const codeTags = ['code'];

const spanSchema = z
  .object({
    startLine: z.number().int(),
    startColumn: z.number().int(),
    endLine: z.number().int(),
    endColumn: z.number().int(),
  })
  .describe('Zero-based lines and columns (UTF-16 code units, as LSP counts them), end exclusive');

const progressSchema = z.object({
  phase: z.enum(INDEX_PHASES),
  filesTotal: z.number().int().describe('Source files found by the walk'),
  filesDone: z.number().int(),
  parsed: z.number().int().describe('Files (re-)parsed by the last run: new or changed'),
  unchanged: z.number().int().describe('Files skipped because their content hash did not change'),
  removed: z.number().int(),
  failed: z.number().int(),
  skippedTooLarge: z.number().int(),
  skippedBinary: z.number().int(),
  skippedLinks: z.number().int().describe('Symbolic links and special files the walk left out (never followed)'),
  truncated: z.boolean().describe('The walk stopped at CODE_MAX_FILES'),
  phaseMs: z
    .partialRecord(z.enum(INDEX_PHASES), z.number().int())
    .describe('Milliseconds spent in each phase of the run so far'),
});

export const repoSchema = z.object({
  id: z.string(),
  name: z.string(),
  source: z.enum(REPO_SOURCE_KINDS),
  location: z.string().describe('The directory or git URL it was registered with'),
  defaultBranch: z.string().nullable(),
  package: z.object({ manager: z.string(), name: z.string(), version: z.string() }).nullable(),
  status: z.enum(REPO_STATUSES),
  progress: progressSchema,
  lastIndexedCommit: z.string().nullable(),
  lastIndexedAt: z.string().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const countsSchema = z.object({
  files: z.number().int(),
  symbols: z.number().int(),
  edges: z.number().int(),
  unresolvedEdges: z.number().int(),
});

export const presentRepo = (r: Repo): z.infer<typeof repoSchema> => ({
  id: r.id,
  name: r.name,
  source: r.sourceKind,
  location: r.location,
  defaultBranch: r.defaultBranch,
  package: r.package,
  status: r.status,
  progress: { ...r.progress },
  lastIndexedCommit: r.lastIndexedCommit,
  lastIndexedAt: r.lastIndexedAt?.toISOString() ?? null,
  lastError: r.lastError,
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
});

const presentCounts = (c: RepoCounts): z.infer<typeof countsSchema> => ({ ...c });

export const symbolSchema = z.object({
  id: z.string(),
  symbol: z.string().describe('SCIP id: scheme manager package version descriptors'),
  name: z.string(),
  qualifiedName: z.string(),
  kind: z.enum(SYMBOL_KINDS),
  language: z.enum(CODE_LANGUAGES),
  repo: z.object({ id: z.string(), name: z.string() }),
  path: z.string(),
  span: spanSchema,
  signature: z.string(),
  doc: z.string().nullable(),
  exported: z.boolean(),
});

export const presentSymbol = (s: CodeSymbol): z.infer<typeof symbolSchema> => ({
  id: s.id,
  symbol: s.scipSymbol,
  name: s.name,
  qualifiedName: s.qualifiedName,
  kind: s.kind,
  language: s.language,
  repo: { id: s.repoId, name: s.repoName },
  path: s.path,
  span: s.span,
  signature: s.signature,
  doc: s.doc,
  exported: s.exported,
});

const referenceSchema = z.object({
  kind: z.enum(EDGE_KINDS),
  confidence: z.number().describe('1 exact, 0.95 via a resolved import, 0.9 same file, 0.5 unique name in the repo'),
  repoId: z.string(),
  path: z.string(),
  span: spanSchema.nullable(),
  enclosing: z.object({ id: z.string(), name: z.string(), qualifiedName: z.string() }).nullable(),
  target: z.object({ id: z.string(), name: z.string(), qualifiedName: z.string(), path: z.string() }),
});

const presentReference = (r: CodeReference): z.infer<typeof referenceSchema> => ({ ...r });

const registerBody = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe('An absolute directory on the server, under <CODE_ALLOWED_ROOTS root>/<org slug>/'),
    url: z
      .string()
      .min(1)
      .max(2048)
      .optional()
      .describe('A git URL: https:// (http, ssh, git:// if the operator enabled them) or file://'),
    name: z.string().trim().min(1).max(200).optional(),
  })
  .refine((b) => (b.path === undefined) !== (b.url === undefined), {
    message: 'Give exactly one of `path` or `url`',
  });

const symbolParam = z.string().trim().min(1).max(1000).describe('A plain name, a qualified name or a SCIP id');
const repoFilter = z.string().min(1).max(100).optional().describe('Only this repository (id)');

/** The repository registry (/v1/repos) and code-graph queries (/v1/code/…). */
export const codeRoutes =
  (deps: { repos: RepoService; code: CodeQueryService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.post(
      '/v1/repos',
      {
        config: { scope: 'code:write', action: 'repo.create' },
        schema: {
          tags: repoTags,
          summary: 'Register a repository (a local path or a git URL) and queue its indexing',
          body: registerBody,
          response: { 202: repoSchema, ...errorsFor(400, 401, 403, 409) },
        },
      },
      async (req, reply) => {
        const repo = await deps.repos.register(contextOf(req), req.body);
        if (req.auditInfo !== null) req.auditInfo.resourceId = repo.id;
        return reply.code(202).send(presentRepo(repo));
      },
    );

    app.get(
      '/v1/repos',
      {
        config: { scope: 'code:read', action: 'repo.list' },
        schema: {
          tags: repoTags,
          summary: 'The org’s repositories with their indexing status and progress',
          response: { 200: z.object({ items: z.array(repoSchema) }), ...errorsFor(401, 403) },
        },
      },
      async (req) => ({ items: (await deps.repos.list(contextOf(req))).map(presentRepo) }),
    );

    app.get(
      '/v1/repos/:id',
      {
        config: { scope: 'code:read', action: 'repo.get' },
        schema: {
          tags: repoTags,
          summary: 'One repository: status, progress and how much of it is indexed',
          params: idParams,
          response: {
            200: repoSchema.extend({
              counts: countsSchema.optional().describe('Absent while a run is indexing (see progress)'),
            }),
            ...errorsFor(401, 403, 404),
          },
        },
      },
      async (req) => {
        const { repo, counts } = await deps.repos.get(contextOf(req), req.params.id);
        return { ...presentRepo(repo), ...(counts === undefined ? {} : { counts: presentCounts(counts) }) };
      },
    );

    app.delete(
      '/v1/repos/:id',
      {
        config: { scope: 'code:write', action: 'repo.delete' },
        schema: {
          tags: repoTags,
          summary: 'Remove a repository with its files, symbols and edges',
          params: idParams,
          response: { 204: z.null().describe('Removed'), ...errorsFor(401, 403, 404) },
        },
      },
      async (req, reply) => {
        if (req.auditInfo !== null) req.auditInfo.resourceId = req.params.id;
        await deps.repos.remove(contextOf(req), req.params.id);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/repos/:id/index',
      {
        config: { scope: 'code:write', action: 'repo.index' },
        schema: {
          tags: repoTags,
          summary: 'Re-index a repository (only changed files are re-parsed); no-op while a run is pending',
          params: idParams,
          response: { 202: repoSchema.extend({ queued: z.boolean() }), ...errorsFor(401, 403, 404) },
        },
      },
      async (req, reply) => {
        if (req.auditInfo !== null) req.auditInfo.resourceId = req.params.id;
        const r = await deps.repos.reindex(contextOf(req), req.params.id);
        return reply.code(202).send({ ...presentRepo(r.repo), queued: r.queued });
      },
    );

    app.get(
      '/v1/code/symbols',
      {
        config: { scope: 'code:read', action: 'code.symbols', rateClass: 'search' },
        schema: {
          tags: codeTags,
          summary: 'Find symbols by name: case-insensitive, exact matches first, then prefixes, then substrings',
          querystring: z.strictObject({
            q: z.string().trim().min(1).max(200),
            repo: repoFilter,
            kind: z.enum(SYMBOL_KINDS).optional(),
            limit: z.coerce.number().int().min(1).max(200).default(20),
          }),
          response: { 200: z.object({ items: z.array(symbolSchema) }), ...errorsFor(400, 401, 403) },
        },
      },
      async (req) => {
        const q = req.query;
        const items = await deps.code.findSymbols(contextOf(req), {
          q: q.q,
          repoId: q.repo,
          kind: q.kind,
          limit: q.limit,
        });
        return { items: items.map(presentSymbol) };
      },
    );

    app.get(
      '/v1/code/definition',
      {
        config: { scope: 'code:read', action: 'code.definition', rateClass: 'search' },
        schema: {
          tags: codeTags,
          summary: 'Where a symbol is defined (by plain name, qualified name or SCIP id), with signature and doc',
          querystring: z.strictObject({ symbol: symbolParam, repo: repoFilter }),
          response: { 200: z.object({ items: z.array(symbolSchema) }), ...errorsFor(400, 401, 403) },
        },
      },
      async (req) => {
        const items = await deps.code.getDefinition(contextOf(req), req.query.symbol, req.query.repo);
        return { items: items.map(presentSymbol) };
      },
    );

    app.get(
      '/v1/code/references',
      {
        config: { scope: 'code:read', action: 'code.references', rateClass: 'search' },
        schema: {
          tags: codeTags,
          summary: 'Who calls, references, extends or implements a symbol, strongest resolution first',
          querystring: z.strictObject({
            symbol: symbolParam,
            repo: repoFilter,
            limit: z.coerce.number().int().min(1).max(1000).default(100),
          }),
          response: {
            200: z.object({ symbols: z.array(symbolSchema), items: z.array(referenceSchema) }),
            ...errorsFor(400, 401, 403),
          },
        },
      },
      async (req) => {
        const r = await deps.code.findReferences(contextOf(req), req.query.symbol, {
          repoId: req.query.repo,
          limit: req.query.limit,
        });
        return { symbols: r.symbols.map(presentSymbol), items: r.references.map(presentReference) };
      },
    );
  };
