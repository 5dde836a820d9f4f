import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditService } from '../../domain/audit/audit.service.ts';
import type { AuditEntry } from '../../domain/audit/audit.types.ts';
import { errorBodySchema } from '../schemas.ts';
import { contextOf } from '../types.ts';

const tags = ['audit'];

const auditEntrySchema = z.object({
  seq: z.number().int(),
  id: z.string(),
  at: z.string(),
  actor: z.object({ type: z.string(), id: z.string().nullable(), authMethod: z.string().nullable() }),
  action: z.string(),
  resource: z.object({ type: z.string().nullable(), id: z.string().nullable() }),
  outcome: z.enum(['success', 'denied', 'failure', 'error']),
  status: z.number().int().nullable(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  requestId: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});

const presentEntry = (e: AuditEntry): z.infer<typeof auditEntrySchema> => ({
  seq: e.seq,
  id: e.id,
  at: e.at.toISOString(),
  actor: { type: e.actorType, id: e.actorId, authMethod: e.authMethod },
  action: e.action,
  resource: { type: e.resourceType, id: e.resourceId },
  outcome: e.outcome,
  status: e.status,
  ip: e.ip,
  userAgent: e.userAgent,
  requestId: e.requestId,
  details: { ...e.details },
  prevHash: e.prevHash,
  hash: e.hash,
});

const isoDate = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

export const auditRoutes =
  (deps: { audit: AuditService }): FastifyPluginAsyncZod =>
  async (app) => {
    app.get(
      '/v1/audit',
      {
        config: { scope: 'audit:read', action: 'audit.list', audit: 'always' },
        schema: {
          tags,
          summary: 'The org’s audit log, newest first, with filters',
          querystring: z.strictObject({
            actor: z.string().max(200).optional(),
            action: z.string().max(100).optional(),
            resourceType: z.string().max(100).optional(),
            resourceId: z.string().max(200).optional(),
            outcome: z.enum(['success', 'denied', 'failure', 'error']).optional(),
            since: isoDate.optional(),
            until: isoDate.optional(),
            limit: z.coerce.number().int().min(1).max(500).default(50),
            cursor: z
              .string()
              .regex(/^\d{1,18}$/)
              .optional(),
          }),
          response: {
            200: z.object({ items: z.array(auditEntrySchema), nextCursor: z.string().nullable() }),
            400: errorBodySchema,
            401: errorBodySchema,
            403: errorBodySchema,
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await deps.audit.list(
          contextOf(req),
          {
            actorId: q.actor,
            action: q.action,
            resourceType: q.resourceType,
            resourceId: q.resourceId,
            outcome: q.outcome,
            since: q.since,
            until: q.until,
          },
          q.limit,
          q.cursor ?? null,
        );
        return { items: page.items.map(presentEntry), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/audit/verify',
      {
        config: { scope: 'audit:read', action: 'audit.verify', audit: 'always' },
        schema: {
          tags,
          summary: 'Verify the org’s audit hash chain: every entry present, unaltered and linked',
          response: {
            200: z.object({
              chainId: z.string(),
              entries: z.number().int(),
              ok: z.boolean(),
              problems: z.array(z.string()),
            }),
          },
        },
      },
      async (req) => {
        const v = await deps.audit.verifyOrg(contextOf(req));
        return { chainId: v.chainId, entries: v.entries, ok: v.ok, problems: [...v.problems] };
      },
    );
  };
