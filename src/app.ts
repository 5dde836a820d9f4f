import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { randomUUID } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';
import type { Authenticator } from './auth/authenticator.ts';
import type { AuthFailureLimiter } from './auth/failure-limiter.ts';
import type { HttpConfig } from './config/config.ts';
import type { AuditService } from './domain/audit/audit.service.ts';
import type { CodeGraphService } from './domain/code/code-graph.service.ts';
import type { CodeQueryService } from './domain/code/code-query.service.ts';
import type { CodeSearchService } from './domain/code/code-search.service.ts';
import type { RepoService } from './domain/code/repo.service.ts';
import type { JobService } from './domain/jobs/job.service.ts';
import type { MemoryService } from './domain/memory/memory.service.ts';
import type { SearchService } from './domain/search/search.service.ts';
import type { ApiKeyService } from './domain/tenancy/api-key.service.ts';
import { isAppError, type ErrorCode } from './errors.ts';
import { STATUS_BY_CODE } from './http/error-status.ts';
import { installAuth } from './http/plugins/auth.ts';
import { installHttpMetrics } from './http/plugins/metrics.ts';
import { installRequestLog } from './http/plugins/request-log.ts';
import { installTracing } from './http/plugins/tracing.ts';
import { installRateLimit, type RateLimitPluginDeps } from './http/plugins/rate-limit.ts';
import { DOCS_CSP, registerSecurity } from './http/plugins/security.ts';
import { auditRoutes } from './http/routes/audit.routes.ts';
import { codeGraphRoutes } from './http/routes/code-graph.routes.ts';
import { codeSearchRoutes } from './http/routes/code-search.routes.ts';
import { codeRoutes } from './http/routes/code.routes.ts';
import { healthRoutes } from './http/routes/health.routes.ts';
import { jobRoutes } from './http/routes/jobs.routes.ts';
import { mcpRoutes, type McpRouteDeps } from './http/routes/mcp.routes.ts';
import { keyRoutes } from './http/routes/keys.routes.ts';
import { memoryRoutes } from './http/routes/memories.routes.ts';
import { metricsRoutes } from './http/routes/metrics.routes.ts';
import './http/types.ts';
import type { DependencyHealth, Health } from './ops/health.ts';
import type { Metrics } from './ops/metrics.ts';

export interface AppDeps {
  readonly memories: MemoryService;
  readonly search: SearchService;
  readonly apiKeys: ApiKeyService;
  readonly audit: AuditService;
  /** The org's background jobs (/v1/jobs); omitted: no such routes. */
  readonly jobs?: JobService | undefined;
  /** Code intelligence (/v1/repos, /v1/code); omitted: no such routes. */
  readonly code?:
    | {
        readonly repos: RepoService;
        readonly query: CodeQueryService;
        /** Dependencies, dependents, impact, source and repo maps; omitted: no such routes. */
        readonly graph?: CodeGraphService | undefined;
      }
    | undefined;
  /** Code search (POST /v1/code/search); omitted: no such route. */
  readonly codeSearch?: CodeSearchService | undefined;
  readonly authenticator: Authenticator;
  /** Failed authentication per client address; omitted: unlimited. */
  readonly authFailures?: AuthFailureLimiter | undefined;
  readonly health: Health;
  /** Dependency states for /health/deps; omitted: no such routes. */
  readonly dependencies?: DependencyHealth | undefined;
  /** Prometheus metrics; omitted: no /metrics and no HTTP instrumentation. */
  readonly metrics?: Metrics | undefined;
  /** Serve /metrics without credentials (METRICS_PUBLIC). */
  readonly metricsPublic?: boolean;
  readonly bodyLimit: number;
  /** Body limit of POST /v1/memories/batch; default: `bodyLimit`. */
  readonly batchBodyLimit?: number | undefined;
  readonly http: HttpConfig;
  /** External base URL (PUBLIC_URL), for DPoP `htu` behind a proxy. */
  readonly publicUrl?: string | undefined;
  readonly auditReads?: boolean;
  /** Token-bucket limits per org and route class; omitted: no limits. */
  readonly rateLimit?: RateLimitPluginDeps | undefined;
  /** MCP over HTTP (Streamable HTTP, legacy SSE, RFC 9728 metadata); omitted: no MCP endpoints. */
  readonly mcp?: McpRouteDeps | undefined;
  /** A pino logger; omitted in tests for silence. */
  readonly logger?: FastifyBaseLogger;
  readonly version?: string;
  /** OpenTelemetry tracer for request spans; omitted: requests are not traced. */
  readonly tracer?: Tracer | undefined;
}

/** Path prefixes served without credentials: docs and the OpenAPI document. */
const PUBLIC_PREFIXES = ['/docs', '/openapi.json'];

export interface RouteInfo {
  readonly method: string;
  readonly url: string;
  readonly scope: string | undefined;
  readonly public: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every registered route with its access rule, for audits and the inventory test. */
    routeInventory: readonly RouteInfo[];
  }
}

/**
 * Deny by default: registering a route that is neither public nor scoped
 * throws, so the server cannot start with an unguarded route.
 */
export function guardRouteScopes(app: FastifyInstance): RouteInfo[] {
  const routes: RouteInfo[] = [];
  app.addHook('onRoute', (route) => {
    // CORS preflights (OPTIONS) carry no credentials by design (Fetch standard).
    const isPublic =
      route.config?.public === true ||
      PUBLIC_PREFIXES.some((p) => route.url.startsWith(p)) ||
      [route.method].flat().every((m) => m === 'OPTIONS');
    const authenticatedOnly = route.config?.authenticated === true;
    if (!isPublic && route.config?.scope === undefined && !authenticatedOnly) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no scope and is not public`);
    }
    for (const method of [route.method].flat()) {
      routes.push({
        method,
        url: route.url,
        scope: route.config?.scope ?? (authenticatedOnly ? 'authenticated' : undefined),
        public: isPublic,
      });
    }
  });
  return routes;
}

const SAFE_5XX: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'EMBEDDING_DIMENSION_MISMATCH',
  'EMBEDDER_UNAVAILABLE',
  'RERANKER_UNAVAILABLE',
  'UNAVAILABLE',
  'STORE_LOCKED',
  'TIMEOUT',
]);

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the Fastify app. Never listens: `main.ts` does, tests use `inject()`. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger === undefined ? { logger: false } : { loggerInstance: deps.logger }),
    // Replaced by one line per request without the raw URL (http/plugins/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimit,
    // Behind a proxy, client IP and protocol (for audit, HSTS and DPoP htu) come from X-Forwarded-*.
    trustProxy: deps.http.trustProxy,
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('ctx', undefined);
  // The API speaks JSON only; anything else gets a clear 415.
  app.removeContentTypeParser('text/plain');

  const routes = guardRouteScopes(app);
  app.decorate('routeInventory', routes);

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
  });
  if (deps.tracer !== undefined) installTracing(app, deps.tracer);
  if (deps.logger !== undefined) installRequestLog(app);
  if (deps.metrics !== undefined) installHttpMetrics(app, deps.metrics);
  await registerSecurity(app, deps.http);
  const isPublic = (req: FastifyRequest) =>
    req.routeOptions.url === undefined ||
    req.routeOptions.config.public === true ||
    req.method === 'OPTIONS' ||
    PUBLIC_PREFIXES.some((p) => req.url.startsWith(p));
  installAuth(app, {
    authenticator: deps.authenticator,
    audit: deps.audit,
    failures: deps.authFailures,
    publicUrl: deps.publicUrl,
    auditReads: deps.auditReads ?? false,
    isPublic,
    sendError,
  });
  if (deps.rateLimit !== undefined) installRateLimit(app, deps.rateLimit);

  app.setErrorHandler((err, req, reply) => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      return sendError(reply, req, 'VALIDATION_FAILED', 'The request is not valid', {
        issues: err.validation.map((v) => ({
          location: err.validationContext,
          path: v.instancePath,
          message: v.message,
        })),
      });
    }
    if (isAppError(err)) {
      const status = STATUS_BY_CODE[err.code];
      if (status < 500) return sendError(reply, req, err.code, err.message, err.details);
      // These messages are made by our factories from known facts ("X is unavailable", a model's
      // dimensions); INTERNAL and the rest may wrap driver or file-system text and stay generic.
      const safe = SAFE_5XX.has(err.code);
      // A dependency behind an open circuit knows when it will next be tried.
      const retryAfter = (err.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
      if (status === 503 && typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
      return sendInternal(reply, req, err, safe ? err.code : 'INTERNAL', safe ? err.message : undefined);
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Routes may have a limit of their own (the batch write).
      const maxBytes = req.routeOptions.bodyLimit ?? deps.bodyLimit;
      return sendError(reply, req, 'PAYLOAD_TOO_LARGE', `The body is larger than ${maxBytes} bytes`, { maxBytes });
    }
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, req, 'UNSUPPORTED_MEDIA_TYPE', 'Send JSON with Content-Type: application/json');
    }
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      // Fastify's own client errors (malformed JSON, empty body…): safe messages.
      const code: ErrorCode =
        e.statusCode === 404 ? 'NOT_FOUND' : e.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED';
      return sendError(reply, req, code, e.message ?? 'Bad request');
    }
    return sendInternal(reply, req, err, 'INTERNAL', undefined);
  });

  app.setNotFoundHandler((req, reply) =>
    sendError(reply, req, 'NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}`),
  );

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Engram API',
        version: deps.version ?? '0.1.0',
        description: 'Memory and code context for AI agents',
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'An Engram API key (egm_…)' },
          oauth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description:
              'An OAuth 2.1 access token from the configured issuer; DPoP-bound tokens use `Authorization: DPoP <token>` plus a `DPoP` proof header',
          },
        },
      },
      security: [{ apiKey: [] }, { oauth: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true, transformStaticCSP: () => DOCS_CSP });
  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes({ health: deps.health, dependencies: deps.dependencies }));
  if (deps.metrics !== undefined) {
    await app.register(metricsRoutes({ metrics: deps.metrics, public: deps.metricsPublic ?? false }));
  }
  await app.register(
    memoryRoutes({ memories: deps.memories, search: deps.search, batchBodyLimit: deps.batchBodyLimit }),
  );
  await app.register(keyRoutes({ apiKeys: deps.apiKeys }));
  await app.register(auditRoutes({ audit: deps.audit }));
  if (deps.jobs !== undefined) await app.register(jobRoutes({ jobs: deps.jobs }));
  if (deps.code !== undefined) await app.register(codeRoutes({ repos: deps.code.repos, code: deps.code.query }));
  if (deps.code?.graph !== undefined) await app.register(codeGraphRoutes({ graph: deps.code.graph }));
  if (deps.codeSearch !== undefined) await app.register(codeSearchRoutes({ codeSearch: deps.codeSearch }));
  if (deps.mcp !== undefined) await app.register(mcpRoutes(deps.mcp));
  return app;
}

function sendError(
  reply: FastifyReply,
  req: FastifyRequest,
  code: ErrorCode,
  message: string,
  details?: unknown,
  errorId?: string,
): FastifyReply {
  if (req.auditInfo !== null) req.auditInfo.errorCode = code;
  return reply
    .code(STATUS_BY_CODE[code])
    .type('application/json; charset=utf-8')
    .send({
      error: {
        code,
        message,
        requestId: req.id,
        ...(errorId === undefined ? {} : { errorId }),
        ...(details === undefined ? {} : { details }),
      },
    });
}

/**
 * A server-side failure: the log gets everything under a fresh error id; the
 * client gets the code, a generic (or factory-made) message and that id —
 * never a stack, SQL or a driver's message.
 */
function sendInternal(
  reply: FastifyReply,
  req: FastifyRequest,
  err: unknown,
  code: ErrorCode,
  safeMessage: string | undefined,
): FastifyReply {
  const errorId = randomUUID();
  req.log.error({ err, errorId, requestId: req.id }, 'request failed');
  return sendError(
    reply,
    req,
    code,
    safeMessage ?? `Internal error; quote errorId ${errorId} when reporting it`,
    undefined,
    errorId,
  );
}
