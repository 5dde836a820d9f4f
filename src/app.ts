import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { randomUUID } from 'node:crypto';
import type { MemoryService } from './domain/memory/memory.service.ts';
import type { SearchService } from './domain/search/search.service.ts';
import type { ApiKeyService } from './domain/tenancy/api-key.service.ts';
import { isAppError, type ErrorCode } from './errors.ts';
import { STATUS_BY_CODE } from './http/error-status.ts';
import { healthRoutes } from './http/routes/health.routes.ts';
import { keyRoutes } from './http/routes/keys.routes.ts';
import { memoryRoutes } from './http/routes/memories.routes.ts';
import './http/types.ts';
import type { Health } from './ops/health.ts';

export interface AppDeps {
  readonly memories: MemoryService;
  readonly search: SearchService;
  readonly apiKeys: ApiKeyService;
  readonly health: Health;
  readonly bodyLimit: number;
  /** A pino logger; omitted in tests for silence. */
  readonly logger?: FastifyBaseLogger;
  readonly version?: string;
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
    const isPublic = route.config?.public === true || PUBLIC_PREFIXES.some((p) => route.url.startsWith(p));
    if (!isPublic && route.config?.scope === undefined) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no scope and is not public`);
    }
    for (const method of [route.method].flat()) {
      routes.push({ method, url: route.url, scope: route.config?.scope, public: isPublic });
    }
  });
  return routes;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the Fastify app. Never listens: `main.ts` does, tests use `inject()`. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger === undefined ? { logger: false } : { loggerInstance: deps.logger }),
    bodyLimit: deps.bodyLimit,
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
    const config = req.routeOptions.config;
    if (
      config.public === true ||
      PUBLIC_PREFIXES.some((p) => req.url.startsWith(p)) ||
      req.routeOptions.url === undefined
    )
      return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (match?.[1] === undefined) {
      void reply.header('www-authenticate', 'Bearer realm="engram"');
      return sendError(reply, req.id, 'UNAUTHENTICATED', 'A valid API key is required: Authorization: Bearer <key>');
    }
    try {
      req.ctx = await deps.apiKeys.authenticate(match[1], req.id);
    } catch (e) {
      if (isAppError(e) && e.code === 'UNAUTHENTICATED') {
        void reply.header('www-authenticate', 'Bearer realm="engram", error="invalid_token"');
        return sendError(reply, req.id, e.code, e.message);
      }
      throw e;
    }
    if (config.scope !== undefined && !req.ctx.scopes.has(config.scope)) {
      return sendError(reply, req.id, 'FORBIDDEN', `This API key lacks the scope ${config.scope}`, {
        requiredScope: config.scope,
      });
    }
  });

  app.setErrorHandler((err, req, reply) => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      return sendError(reply, req.id, 'VALIDATION_FAILED', 'The request is not valid', {
        issues: err.validation.map((v) => ({
          location: err.validationContext,
          path: v.instancePath,
          message: v.message,
        })),
      });
    }
    if (isAppError(err)) {
      if (STATUS_BY_CODE[err.code] >= 500) req.log.error({ err, errorId: req.id }, err.message);
      return sendError(
        reply,
        req.id,
        err.code,
        STATUS_BY_CODE[err.code] >= 500 && err.code === 'INTERNAL' ? 'Internal error' : err.message,
        err.details,
      );
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, req.id, 'PAYLOAD_TOO_LARGE', `The body is larger than ${deps.bodyLimit} bytes`, {
        maxBytes: deps.bodyLimit,
      });
    }
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(reply, req.id, 'UNSUPPORTED_MEDIA_TYPE', 'Send JSON with Content-Type: application/json');
    }
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      // Fastify's own client errors (malformed JSON, empty body…): safe messages.
      const code: ErrorCode =
        e.statusCode === 404 ? 'NOT_FOUND' : e.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED';
      return sendError(reply, req.id, code, e.message ?? 'Bad request');
    }
    req.log.error({ err, errorId: req.id }, 'unhandled error');
    return sendError(reply, req.id, 'INTERNAL', 'Internal error; quote the requestId when reporting it');
  });

  app.setNotFoundHandler((req, reply) =>
    sendError(reply, req.id, 'NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}`),
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
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An Engram API key (egm_…)' } },
      },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes({ health: deps.health }));
  await app.register(memoryRoutes({ memories: deps.memories, search: deps.search }));
  await app.register(keyRoutes({ apiKeys: deps.apiKeys }));
  return app;
}

function sendError(
  reply: import('fastify').FastifyReply,
  requestId: string,
  code: ErrorCode,
  message: string,
  details?: unknown,
) {
  return reply
    .code(STATUS_BY_CODE[code])
    .type('application/json; charset=utf-8')
    .send({ error: { code, message, requestId, ...(details === undefined ? {} : { details }) } });
}
