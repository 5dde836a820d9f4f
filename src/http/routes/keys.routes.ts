import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiKeyService } from '../../domain/tenancy/api-key.service.ts';
import { ALL_SCOPES } from '../../domain/tenancy/tenancy.types.ts';
import { apiKeySchema, errorBodySchema, idParams, presentApiKey } from '../schemas.ts';
import { contextOf } from '../types.ts';

const tags = ['api keys'];

export const keyRoutes =
  (deps: { apiKeys: ApiKeyService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.post(
      '/v1/keys',
      {
        config: { scope: 'admin:keys', action: 'api_key.create' },
        schema: {
          tags,
          summary: 'Create an API key for the caller’s org; the secret is shown only in this response',
          body: z.strictObject({
            name: z.string().trim().min(1).max(100),
            scopes: z.array(z.enum(ALL_SCOPES)).min(1).optional(),
            expiresAt: z.iso
              .datetime({ offset: true })
              .transform((s) => new Date(s))
              .optional(),
          }),
          response: {
            201: z.object({ key: apiKeySchema, secret: z.string() }),
            400: errorBodySchema,
            401: errorBodySchema,
            403: errorBodySchema,
          },
        },
      },
      async (req, reply) => {
        const ctx = contextOf(req);
        const issued = await deps.apiKeys.create(
          ctx.orgId,
          { name: req.body.name, scopes: req.body.scopes, expiresAt: req.body.expiresAt },
          ctx.scopes,
        );
        if (req.auditInfo !== null) req.auditInfo.resourceId = issued.key.id;
        return reply.code(201).send({ key: presentApiKey(issued.key), secret: issued.secret });
      },
    );

    app.get(
      '/v1/keys',
      {
        config: { scope: 'admin:keys', action: 'api_key.list', audit: 'always' },
        schema: {
          tags,
          summary: 'List the org’s API keys (never their secrets)',
          response: { 200: z.object({ items: z.array(apiKeySchema) }) },
        },
      },
      async (req) => ({ items: (await deps.apiKeys.list(contextOf(req))).map(presentApiKey) }),
    );

    app.delete(
      '/v1/keys/:id',
      {
        config: { scope: 'admin:keys', action: 'api_key.revoke' },
        schema: {
          tags,
          summary: 'Revoke an API key (effective immediately)',
          params: idParams,
          response: { 200: apiKeySchema, 404: errorBodySchema },
        },
      },
      async (req) => presentApiKey(await deps.apiKeys.revoke(contextOf(req), req.params.id)),
    );

    app.get(
      '/v1/me',
      {
        config: { authenticated: true, action: 'auth.whoami' },
        schema: {
          tags,
          summary: 'Who am I: the org, actor, roles, scopes and auth method behind the presented credentials',
          response: {
            200: z.object({
              orgId: z.string(),
              actor: z.object({ type: z.string(), id: z.string() }),
              roles: z.array(z.string()),
              scopes: z.array(z.string()),
              authMethod: z.string(),
            }),
          },
        },
      },
      async (req) => {
        const ctx = contextOf(req);
        return {
          orgId: ctx.orgId,
          actor: ctx.actor,
          roles: [...ctx.roles],
          scopes: [...ctx.scopes],
          authMethod: ctx.authMethod,
        };
      },
    );
  };
