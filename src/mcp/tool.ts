import type { z } from 'zod';
import type { RateClass } from '../domain/tenancy/quota.types.ts';
import type { Scope } from '../domain/tenancy/tenancy.types.ts';

/** Hints MCP clients use to decide whether to ask the user first (MCP spec: ToolAnnotations). */
export interface ToolHints {
  readonly readOnlyHint: boolean;
  readonly idempotentHint: boolean;
  readonly destructiveHint: boolean;
  readonly openWorldHint?: boolean;
}

/** What a tool returns: structured content for programs, a compact text for an LLM's context. */
export interface ToolOutput<O> {
  readonly structured: O;
  readonly text: string;
  /** The resource the call touched, for the audit log. */
  readonly resourceId?: string | undefined;
  /** Facts for the call's audit entry, e.g. a batch's counts (never content). */
  readonly auditDetails?: Record<string, unknown> | undefined;
}

/**
 * One MCP tool: a thin face over a domain service, like a REST route. The
 * `scope` is mandatory — the registry refuses a tool without one, and a
 * session only sees (and may only call) the tools its scopes allow.
 */
export interface ToolDef<Ctx, I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  readonly name: string;
  readonly title: string;
  readonly description: string;
  readonly scope: Scope;
  readonly hints: ToolHints;
  readonly input: I;
  readonly output: O;
  /**
   * The org bucket a call is charged to, as the REST route over the same
   * service is; default `read` for read-only tools, else `write`.
   */
  readonly rateClass?: RateClass;
  /** Tokens a call costs, from its validated arguments (a bulk write: its items); default 1. */
  readonly rateCost?: (args: z.infer<I>) => number;
  run(ctx: Ctx, args: z.infer<I>): Promise<ToolOutput<z.infer<O>>>;
}

/** Keeps each tool's input/output types tied to its schemas. */
export const defineTool = <Ctx, I extends z.ZodObject, O extends z.ZodObject>(
  def: ToolDef<Ctx, I, O>,
): ToolDef<Ctx, I, O> => def;

const NAME_RE = /^[a-z][a-z0-9_]{1,63}$/;

/**
 * Checks a tool set at startup: snake_case unique names, a declared scope, a
 * title and a description. Throws on the first problem, so a server with an
 * unguarded tool cannot start.
 */
export function assertToolRegistry(tools: ReadonlyArray<ToolDef<unknown>>, knownScopes: readonly string[]): void {
  const seen = new Set<string>();
  for (const t of tools) {
    if (!NAME_RE.test(t.name)) throw new Error(`MCP tool "${t.name}" is not snake_case`);
    if (seen.has(t.name)) throw new Error(`MCP tool "${t.name}" is registered twice`);
    seen.add(t.name);
    if ((t.scope as string | undefined) === undefined || !knownScopes.includes(t.scope)) {
      throw new Error(`MCP tool "${t.name}" declares no known scope`);
    }
    if (t.title.trim() === '' || t.description.trim() === '') {
      throw new Error(`MCP tool "${t.name}" needs a title and a description`);
    }
  }
}

/** Cuts text for an LLM context, marking the cut. */
export const clip = (s: string, max: number): string => (s.length <= max ? s : `${s.slice(0, max - 1)}…`);
