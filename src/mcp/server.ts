import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  ErrorCode as RpcErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import { SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api';
import { z } from 'zod';
import { can } from '../auth/policy.ts';
import type { AuditService } from '../domain/audit/audit.service.ts';
import type { MemoryService } from '../domain/memory/memory.service.ts';
import type { RateGate } from '../domain/tenancy/rate-gate.ts';
import type { RateClass } from '../domain/tenancy/quota.types.ts';
import { ALL_SCOPES, type RequestContext } from '../domain/tenancy/tenancy.types.ts';
import { isAppError, type ErrorCode } from '../errors.ts';
import { boundedId } from '../ops/identifiers.ts';
import { assertToolRegistry, clip, type ToolDef } from './tool.ts';
import { memoryUri, presentMemory } from './tools/memory.tools.ts';

/** The little of a pino logger the MCP layer needs. */
export interface McpLog {
  error(obj: object, msg: string): void;
}

export interface McpDeps {
  readonly tools: ReadonlyArray<ToolDef<RequestContext>>;
  readonly memories: MemoryService;
  readonly audit: AuditService;
  readonly log: McpLog;
  readonly version: string;
  /** A span `mcp.tool <name>` per tool call; default no-op. */
  readonly tracer?: Tracer | undefined;
  /**
   * The org's rate limits: each tool call (and resource read) is charged to
   * its class, so a JSON-RPC batch costs what its calls would over REST;
   * omitted: unlimited.
   */
  readonly rates?: RateGate | undefined;
}

/** The bucket a tool's calls are charged to. */
export const rateClassOfTool = (tool: ToolDef<unknown>): RateClass =>
  tool.rateClass ?? (tool.hints.readOnlyHint ? 'read' : 'write');

/** Where a session comes from, for the audit log. */
export interface McpOrigin {
  readonly transport: 'streamable-http' | 'sse' | 'stdio';
  readonly ip: string | null;
  readonly userAgent: string | null;
}

/** Domain errors whose message is safe to show; everything else is reported by error id only. */
const SAFE_SERVER_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'EMBEDDING_DIMENSION_MISMATCH',
  'EMBEDDER_UNAVAILABLE',
  'RERANKER_UNAVAILABLE',
  'UNAVAILABLE',
  'TIMEOUT',
  'STORE_LOCKED',
]);
const CLIENT_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'VALIDATION_FAILED',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'RESIDENCY_VIOLATION',
  'NOT_FOUND',
  'MEMORY_NOT_FOUND',
  'API_KEY_NOT_FOUND',
  'ORG_NOT_FOUND',
  'ENTITY_NOT_FOUND',
  'CONFLICT',
  'QUOTA_EXCEEDED',
  'PAYLOAD_TOO_LARGE',
  'RATE_LIMITED',
]);

const INSTRUCTIONS =
  'Engram stores what you learn for later. Use `remember` to store a fact, decision or preference, ' +
  '`recall` to search by meaning and keywords before answering, and `update_memory`/`forget` to keep ' +
  'memories correct. The knowledge-graph tools (create_entities, add_observations, search_nodes, …) ' +
  'keep entities and relations.';

const errorResult = (code: string, message: string, details?: unknown): CallToolResult => ({
  isError: true,
  content: [{ type: 'text', text: `${code}: ${message}` }],
  _meta: { 'engram/error': { code, message, ...(details === undefined ? {} : { details }) } },
});

/**
 * One MCP server for one authenticated principal. Only the tools the
 * principal's scopes allow are registered, so `tools/list` shows exactly what
 * it may call; `tools/call` is answered by our own handler, which checks the
 * scope again, validates arguments (bad ones are protocol errors), turns
 * domain errors into `isError` results with a code, never lets internals out,
 * and audits every call.
 */
export function createMcpServer(ctx: RequestContext, deps: McpDeps, origin: McpOrigin): McpServer {
  assertToolRegistry(deps.tools, ALL_SCOPES);
  const server = new McpServer(
    { name: 'engram', title: 'Engram', version: deps.version },
    { instructions: INSTRUCTIONS, capabilities: { tools: { listChanged: false } } },
  );
  const visible = deps.tools.filter((t) => can(ctx, t.scope));
  for (const t of visible) {
    server.registerTool(
      t.name,
      {
        title: t.title,
        description: t.description,
        inputSchema: t.input,
        outputSchema: t.output,
        annotations: { title: t.title, ...t.hints },
      },
      // Never called: tools/call is answered by the handler installed below.
      () => errorResult('INTERNAL', 'unreachable'),
    );
  }
  if (visible.length === 0) server.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] }));

  const byName = new Map(deps.tools.map((t) => [t.name, t]));
  const tracer = deps.tracer ?? trace.getTracer('engram');
  server.server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const name = request.params.name;
    const tool = byName.get(name);
    if (tool === undefined) throw new McpError(RpcErrorCode.InvalidParams, `Unknown tool: ${name}`);
    // Arguments stay out of the span: they carry memory content and queries.
    return tracer.startActiveSpan(
      `mcp.tool ${name}`,
      { attributes: { 'mcp.tool.name': name, 'engram.org_id': ctx.orgId } },
      async (span) => {
        try {
          const result = await callTool(tool, request.params.arguments, extra.requestId, span);
          if (result.isError === true) span.setStatus({ code: SpanStatusCode.ERROR });
          return result;
        } catch (e) {
          span.setStatus({ code: SpanStatusCode.ERROR });
          throw e;
        } finally {
          span.end();
        }
      },
    );
  });

  const callTool = async (
    tool: ToolDef<RequestContext>,
    args: Record<string, unknown> | undefined,
    rpcId: string | number,
    span: Span,
  ): Promise<CallToolResult> => {
    const name = tool.name;
    // The JSON-RPC id is the client's: bounded before it reaches the audit log and the logs (a 900 KB id was stored).
    const callCtx: RequestContext = { ...ctx, requestId: `${ctx.requestId}:${boundedId(String(rpcId))}` };
    const record = async (
      outcome: 'success' | 'denied' | 'failure' | 'error',
      resourceId: string | null,
      details: Record<string, unknown>,
    ) => {
      span.setAttribute('engram.outcome', outcome);
      if (typeof details.errorCode === 'string') span.setAttribute('error.type', details.errorCode);
      await deps.audit
        .record({
          orgId: ctx.orgId,
          actorType: ctx.actor.type,
          actorId: ctx.actor.id,
          authMethod: ctx.authMethod,
          action: `mcp.${name}`,
          resourceType: 'mcp_tool',
          resourceId,
          outcome,
          status: null,
          ip: origin.ip,
          userAgent: origin.userAgent,
          requestId: callCtx.requestId,
          details: { transport: origin.transport, ...details },
        })
        .catch((err: unknown) => deps.log.error({ err, tool: name }, 'audit entry could not be written'));
    };

    if (!can(ctx, tool.scope)) {
      await record('denied', null, { errorCode: 'FORBIDDEN', requiredScope: tool.scope });
      return errorResult('FORBIDDEN', `This session lacks the scope ${tool.scope} that ${name} needs`, {
        requiredScope: tool.scope,
      });
    }
    const parsed = tool.input.safeParse(args ?? {});
    if (!parsed.success) {
      await record('failure', null, { errorCode: 'VALIDATION_FAILED' });
      throw new McpError(RpcErrorCode.InvalidParams, `Invalid arguments for ${name}: ${z.prettifyError(parsed.error)}`);
    }
    try {
      const cost = tool.rateCost === undefined ? 1 : Math.max(1, Math.ceil(tool.rateCost(parsed.data)));
      await deps.rates?.charge(ctx.orgId, rateClassOfTool(tool), cost, tool.rateCost === undefined ? 'calls' : 'items');
      const out = await tool.run(callCtx, parsed.data);
      await record('success', out.resourceId ?? null, out.auditDetails ?? {});
      return { content: [{ type: 'text', text: out.text }], structuredContent: out.structured };
    } catch (e) {
      // A refused call changed nothing; auditing each would turn a flood into audit writes (metrics count them).
      if (isAppError(e) && e.code === 'RATE_LIMITED') return errorResult(e.code, e.message, e.details);
      if (isAppError(e) && (CLIENT_ERRORS.has(e.code) || SAFE_SERVER_ERRORS.has(e.code))) {
        await record(CLIENT_ERRORS.has(e.code) ? 'failure' : 'error', null, { errorCode: e.code });
        return errorResult(e.code, e.message, e.details);
      }
      const errorId = randomUUID();
      deps.log.error({ err: e, errorId, tool: name, requestId: callCtx.requestId }, 'MCP tool failed');
      await record('error', null, { errorCode: 'INTERNAL', errorId });
      return errorResult('INTERNAL', `Internal error; quote errorId ${errorId} when reporting it`, { errorId });
    }
  };

  const chargeRead = async () => {
    try {
      await deps.rates?.charge(ctx.orgId, 'read', 1);
    } catch (e) {
      if (isAppError(e) && e.code === 'RATE_LIMITED')
        throw new McpError(RpcErrorCode.InvalidRequest, e.message, e.details);
      throw e;
    }
  };

  if (can(ctx, 'memories:read')) {
    server.registerResource(
      'memory',
      new ResourceTemplate('engram://memories/{id}', {
        list: async () => {
          await chargeRead();
          const page = await deps.memories.list(ctx, {}, 50, null);
          return {
            resources: page.items.map((m) => ({
              uri: memoryUri(m.id),
              name: clip(m.content.replace(/\s+/g, ' '), 80),
              mimeType: 'application/json',
            })),
          };
        },
      }),
      { title: 'Memory', description: 'One Engram memory as JSON', mimeType: 'application/json' },
      async (uri, vars) => {
        const id = String(vars.id);
        await chargeRead();
        try {
          const m = await deps.memories.get(ctx, id);
          return {
            contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(presentMemory(m)) }],
          };
        } catch (e) {
          // MCP's "resource not found" (-32002); other failures stay generic.
          if (isAppError(e) && CLIENT_ERRORS.has(e.code)) throw new McpError(-32002, `Resource not found: ${uri.href}`);
          const errorId = randomUUID();
          deps.log.error({ err: e, errorId, uri: uri.href }, 'MCP resource read failed');
          throw new McpError(RpcErrorCode.InternalError, `Internal error; errorId ${errorId}`);
        }
      },
    );
  }
  return server;
}
