import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { McpConfig } from '../../config/config.ts';
import { ALL_SCOPES, type RequestContext } from '../../domain/tenancy/tenancy.types.ts';
import { AppError } from '../../errors.ts';
import { baseUrl } from '../plugins/auth.ts';
import { contextOf } from '../types.ts';

export interface McpSessionOrigin {
  readonly transport: 'streamable-http' | 'sse';
  readonly ip: string | null;
  readonly userAgent: string | null;
}

export interface McpRouteDeps {
  /** Builds the MCP server for one principal (only `main.ts` knows the MCP layer). */
  readonly createServer: (ctx: RequestContext, origin: McpSessionOrigin) => McpServer;
  readonly config: McpConfig;
  /** The interface the server listens on; loopback narrows the accepted Host names. */
  readonly listenHost: string;
  readonly publicUrl: string | undefined;
  readonly authorizationServers: readonly string[];
  readonly dpopAlgorithms: readonly string[];
  readonly dpopRequired: boolean;
  /** Clock for SSE idleness; default Date.now (tests move it instead of waiting). */
  readonly now?: () => number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const tags = ['mcp'];

/**
 * MCP over HTTP. `/mcp` is Streamable HTTP in stateless mode: every POST is
 * authenticated like any request and gets a server built for that principal,
 * so a token's scopes decide the tools it sees on every call. `/sse` +
 * `/messages` keep the legacy SSE transport for older clients; a session is
 * bound to the principal that opened it. The metadata routes make `/mcp` an
 * OAuth 2.1 protected resource (RFC 9728).
 */
export const mcpRoutes =
  (deps: McpRouteDeps): FastifyPluginAsyncZod =>
  async (app) => {
    const loopbackOnly = LOOPBACK.has(deps.listenHost);
    const publicHost = deps.publicUrl === undefined ? undefined : new URL(deps.publicUrl).host;

    /** DNS-rebinding protection (MCP transport spec): check Host and Origin before serving. */
    const guard = (req: FastifyRequest) => {
      const hostName = req.hostname;
      const hostOk =
        deps.config.allowedHosts.length > 0
          ? deps.config.allowedHosts.includes(req.host) || deps.config.allowedHosts.includes(hostName)
          : req.host === publicHost || !loopbackOnly || LOOPBACK.has(hostName);
      if (!hostOk) {
        throw new AppError('FORBIDDEN', `Host ${req.host} is not allowed for MCP (see MCP_ALLOWED_HOSTS)`);
      }
      const origin = req.headers.origin;
      if (origin === undefined) return;
      let originHost: string | undefined;
      try {
        originHost = new URL(origin).host;
      } catch {
        originHost = undefined;
      }
      const sameOrigin = origin === baseUrl(req, deps.publicUrl);
      const allowed =
        sameOrigin ||
        deps.config.allowedOrigins.includes(origin) ||
        (loopbackOnly && originHost !== undefined && LOOPBACK.has(new URL(origin).hostname));
      if (!allowed)
        throw new AppError('FORBIDDEN', `Origin ${origin} is not allowed for MCP (see MCP_ALLOWED_ORIGINS)`);
    };

    const origin = (req: FastifyRequest, transport: McpSessionOrigin['transport']): McpSessionOrigin => ({
      transport,
      ip: req.ip,
      userAgent: req.headers['user-agent']?.slice(0, 256) ?? null,
    });

    /** After hijacking, Fastify no longer writes the headers our hooks set (security headers, request id). */
    const handOver = (reply: FastifyReply) => {
      void reply.hijack();
      for (const [k, v] of Object.entries(reply.getHeaders())) {
        if (v !== undefined) reply.raw.setHeader(k, v);
      }
    };

    const failAfterHijack = (reply: FastifyReply, req: FastifyRequest, err: unknown) => {
      req.log.error({ err, requestId: req.id }, 'MCP transport failed');
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(500, { 'content-type': 'application/json' });
        reply.raw.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal error' }, id: null }));
      } else reply.raw.end();
    };

    const metadata = (req: FastifyRequest, suffix: string) => {
      const base = baseUrl(req, deps.publicUrl);
      return {
        resource: `${base}${suffix}`,
        authorization_servers: [...deps.authorizationServers],
        scopes_supported: [...ALL_SCOPES],
        bearer_methods_supported: ['header'],
        resource_name: 'Engram',
        resource_documentation: `${base}/docs`,
        dpop_signing_alg_values_supported: [...deps.dpopAlgorithms],
        dpop_bound_access_tokens_required: deps.dpopRequired,
      };
    };
    const metadataSchema = { tags: ['oauth'], summary: 'OAuth 2.0 Protected Resource Metadata (RFC 9728)' };
    app.get('/.well-known/oauth-protected-resource', { config: { public: true }, schema: metadataSchema }, (req) =>
      metadata(req, ''),
    );
    app.get('/.well-known/oauth-protected-resource/mcp', { config: { public: true }, schema: metadataSchema }, (req) =>
      metadata(req, '/mcp'),
    );

    app.post(
      '/mcp',
      {
        // The envelope costs one read token; each tool call in it is charged to its own class by the MCP server.
        config: { authenticated: true, action: 'mcp.request', audit: 'read', rateClass: 'read' },
        schema: {
          tags,
          summary: 'MCP Streamable HTTP endpoint (JSON-RPC; tools are scoped per token)',
          body: z.unknown(),
        },
      },
      async (req, reply) => {
        guard(req);
        const server = deps.createServer(contextOf(req), origin(req, 'streamable-http'));
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: undefined,
          enableJsonResponse: true,
        });
        handOver(reply);
        reply.raw.on('close', () => {
          void transport.close();
          void server.close();
        });
        try {
          await server.connect(transport);
          await transport.handleRequest(req.raw, reply.raw, req.body);
        } catch (err) {
          failAfterHijack(reply, req, err);
        }
      },
    );

    const notAllowed = async (_req: FastifyRequest, reply: FastifyReply) =>
      reply
        .code(405)
        .header('allow', 'POST')
        .send({
          jsonrpc: '2.0',
          error: {
            code: -32000,
            message: 'Method not allowed: this server runs MCP Streamable HTTP statelessly (POST only)',
          },
          id: null,
        });
    app.get(
      '/mcp',
      { config: { authenticated: true }, schema: { tags, summary: 'Not used (stateless): 405' } },
      notAllowed,
    );
    app.delete(
      '/mcp',
      { config: { authenticated: true }, schema: { tags, summary: 'Not used (stateless): 405' } },
      notAllowed,
    );

    const now = deps.now ?? Date.now;
    const sessions = new Map<
      string,
      { transport: SSEServerTransport; server: McpServer; orgId: string; actorId: string; lastActiveAt: number }
    >();
    const end = (id: string) => {
      const s = sessions.get(id);
      sessions.delete(id);
      void s?.transport.close().catch(() => undefined);
    };
    // An SSE stream holds a socket and a server for as long as the client keeps it open: idle ones are ended.
    const sweep = () => {
      const cutoff = now() - deps.config.sseIdleTimeoutMs;
      for (const [id, s] of sessions) if (s.lastActiveAt < cutoff) end(id);
    };
    const sweeper = setInterval(sweep, Math.min(60_000, deps.config.sseIdleTimeoutMs));
    sweeper.unref();
    app.addHook('onClose', async () => {
      clearInterval(sweeper);
      for (const s of sessions.values()) await s.transport.close().catch(() => undefined);
      sessions.clear();
    });

    app.get(
      '/sse',
      {
        config: { authenticated: true, action: 'mcp.sse_connect' },
        schema: { tags, summary: 'Legacy MCP SSE transport: opens the event stream (then POST /messages)' },
      },
      async (req, reply) => {
        guard(req);
        const ctx = contextOf(req);
        sweep();
        let open = 0;
        for (const s of sessions.values()) if (s.orgId === ctx.orgId && s.actorId === ctx.actor.id) open += 1;
        if (open >= deps.config.sseMaxSessions) {
          throw new AppError(
            'RATE_LIMITED',
            `This principal already has ${open} open MCP SSE sessions; close one, or use Streamable HTTP (POST /mcp)`,
            { details: { maxSessions: deps.config.sseMaxSessions } },
          );
        }
        const server = deps.createServer(ctx, origin(req, 'sse'));
        handOver(reply);
        const transport = new SSEServerTransport('/messages', reply.raw);
        sessions.set(transport.sessionId, {
          transport,
          server,
          orgId: ctx.orgId,
          actorId: ctx.actor.id,
          lastActiveAt: now(),
        });
        transport.onclose = () => sessions.delete(transport.sessionId);
        reply.raw.on('close', () => {
          sessions.delete(transport.sessionId);
          void server.close();
        });
        try {
          await server.connect(transport);
        } catch (err) {
          failAfterHijack(reply, req, err);
        }
      },
    );

    app.post(
      '/messages',
      {
        config: { authenticated: true, action: 'mcp.sse_message', audit: 'read', rateClass: 'read' },
        schema: {
          tags,
          summary: 'Legacy MCP SSE transport: a client message for the session',
          querystring: z.object({ sessionId: z.string().min(1).max(200) }),
          body: z.unknown(),
        },
      },
      async (req, reply) => {
        guard(req);
        const ctx = contextOf(req);
        const session = sessions.get(req.query.sessionId);
        // Another principal's session id is treated as unknown: sessions never cross callers.
        if (session === undefined || session.orgId !== ctx.orgId || session.actorId !== ctx.actor.id) {
          throw new AppError('NOT_FOUND', 'No such MCP session; open one with GET /sse');
        }
        if (session.lastActiveAt < now() - deps.config.sseIdleTimeoutMs) {
          end(req.query.sessionId);
          throw new AppError('NOT_FOUND', 'The MCP session was closed after being idle; open one with GET /sse');
        }
        session.lastActiveAt = now();
        handOver(reply);
        try {
          await session.transport.handlePostMessage(req.raw, reply.raw, req.body);
        } catch (err) {
          failAfterHijack(reply, req, err);
        }
      },
    );
  };
