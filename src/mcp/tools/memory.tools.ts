import { z } from 'zod';
import type { MemoryService } from '../../domain/memory/memory.service.ts';
import type { Memory, MemoryScope } from '../../domain/memory/memory.types.ts';
import type { SearchService } from '../../domain/search/search.service.ts';
import type { RequestContext } from '../../domain/tenancy/tenancy.types.ts';
import { clip, defineTool, type ToolDef } from '../tool.ts';

const idText = z.string().trim().min(1).max(200);
export const scopeInput = z
  .strictObject({
    user: idText.optional(),
    agent: idText.optional(),
    project: idText.optional(),
    session: idText.optional(),
  })
  .describe('Who or what the memory is about or for (free-form ids); omit for org-wide');

const memoryOut = z.object({
  id: z.string(),
  uri: z.string(),
  content: z.string(),
  scope: z.object({
    user: z.string().optional(),
    agent: z.string().optional(),
    project: z.string().optional(),
    session: z.string().optional(),
  }),
  tags: z.array(z.string()),
  metadata: z.record(z.string(), z.unknown()),
  source: z.string().nullable(),
  version: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const memoryUri = (id: string): string => `engram://memories/${id}`;

export const presentMemory = (m: Memory): z.infer<typeof memoryOut> => ({
  id: m.id,
  uri: memoryUri(m.id),
  content: m.content,
  scope: Object.fromEntries(Object.entries(m.scope).filter(([, v]) => v !== undefined)),
  tags: [...m.tags],
  metadata: m.metadata,
  source: m.source,
  version: m.version,
  createdAt: m.createdAt.toISOString(),
  updatedAt: m.updatedAt.toISOString(),
});

const scopeText = (s: MemoryScope): string => {
  const parts = Object.entries(s).filter(([, v]) => v !== undefined);
  return parts.length === 0 ? '' : ` [${parts.map(([k, v]) => `${k}=${String(v)}`).join(' ')}]`;
};

/** One line per memory: enough for an LLM to cite and fetch it, small enough for its context. */
const line = (m: Memory, maxChars = 400): string =>
  `${m.id} v${m.version}${scopeText(m.scope)}${m.tags.length > 0 ? ` #${m.tags.join(' #')}` : ''}: ${clip(m.content.replace(/\s+/g, ' '), maxChars)}`;

/**
 * What an agent may store in one `remember_many` call. Lower than the REST
 * batch (1,000): the answer lists every item in the agent's context, and an
 * MCP call is rate-limited as one request, not per item, so this bounds what
 * one call writes. Bulk imports go through POST /v1/memories/batch or
 * `engram import`.
 */
export const MCP_REMEMBER_MANY_MAX = 100;

/** One memory to store: the input of `remember`, and each item of `remember_many`. */
const rememberInput = z.strictObject({
  content: z.string().min(1).describe('What to remember, in plain language'),
  scope: scopeInput.optional(),
  tags: z.array(z.string().trim().min(1).max(100)).max(50).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  source: z.string().max(500).optional(),
});

export function memoryTools(deps: {
  memories: MemoryService;
  search: SearchService;
  maxLimit: number;
}): Array<ToolDef<RequestContext>> {
  const limit = z.number().int().min(1).max(deps.maxLimit);
  return [
    defineTool({
      name: 'remember',
      title: 'Remember',
      description:
        'Store a memory (a fact, decision, preference or note) for later recall. An exact duplicate in the same scope is returned instead of stored twice.',
      scope: 'memories:write',
      hints: { readOnlyHint: false, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: rememberInput,
      output: z.object({ memory: memoryOut, deduplicated: z.boolean(), embedded: z.boolean() }),
      run: async (ctx, a) => {
        const r = await deps.memories.remember(ctx, a);
        return {
          structured: { memory: presentMemory(r.memory), deduplicated: !r.created, embedded: r.embedded },
          text: `${r.created ? 'Remembered' : 'Already known'}: ${line(r.memory)}`,
          resourceId: r.memory.id,
        };
      },
    }),
    defineTool({
      name: 'remember_many',
      title: 'Remember many',
      description: `Store several memories at once (up to ${MCP_REMEMBER_MANY_MAX}), e.g. the facts of a conversation. Each is handled like \`remember\`: exact duplicates in the same scope are returned, not stored twice. One that cannot be stored is reported in its place; the others are stored.`,
      scope: 'memories:write',
      // Charged per item to the bulk-write bucket, like POST /v1/memories/batch.
      rateClass: 'import',
      rateCost: (a) => a.memories.length,
      hints: { readOnlyHint: false, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({
        memories: z
          .array(rememberInput)
          .min(1)
          .max(MCP_REMEMBER_MANY_MAX)
          .describe('The memories, each as for `remember`'),
      }),
      output: z.object({
        results: z.array(
          z.object({
            index: z.number().int(),
            status: z.enum(['created', 'existing', 'error']),
            memory: memoryOut.optional(),
            error: z.object({ code: z.string(), message: z.string() }).optional(),
          }),
        ),
        created: z.number().int(),
        existing: z.number().int(),
        failed: z.number().int(),
      }),
      run: async (ctx, a) => {
        const r = await deps.memories.rememberMany(ctx, a.memories);
        const results = r.results.map((o) =>
          o.status === 'error'
            ? { index: o.index, status: o.status, error: { code: o.error.code, message: o.error.message } }
            : { index: o.index, status: o.status, memory: presentMemory(o.memory) },
        );
        const lines = r.results.map((o) =>
          o.status === 'error'
            ? `${o.index + 1}. Not stored: ${o.error.code}: ${o.error.message}`
            : `${o.index + 1}. ${o.status === 'created' ? 'Remembered' : 'Already known'}: ${line(o.memory, 200)}`,
        );
        return {
          structured: { results, created: r.created, existing: r.existing, failed: r.failed },
          text: `${r.created} remembered, ${r.existing} already known, ${r.failed} not stored.\n${lines.join('\n')}`,
          auditDetails: { items: r.results.length, created: r.created, existing: r.existing, failed: r.failed },
        };
      },
    }),
    defineTool({
      name: 'recall',
      title: 'Recall',
      description:
        'Search memories by meaning and keywords (hybrid: BM25 keywords + vector + the conversation around a hit, fused by score). Filter by scope and tags. Each result explains which signals found it.',
      scope: 'memories:read',
      rateClass: 'search',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({
        query: z.string().min(1).max(2000),
        mode: z.enum(['hybrid', 'lexical', 'vector']).optional(),
        scope: scopeInput.optional(),
        tags: z.array(z.string().trim().min(1).max(100)).max(20).optional(),
        limit: limit.optional(),
      }),
      output: z.object({
        results: z.array(
          z.object({
            memory: memoryOut,
            score: z.number(),
            signals: z.record(z.string(), z.object({ rank: z.number().int(), score: z.number() })),
            why: z.string(),
          }),
        ),
        mode: z.string(),
        degraded: z.array(z.string()),
        degradedReasons: z.record(z.string(), z.object({ code: z.string(), message: z.string() })),
      }),
      run: async (ctx, a) => {
        const r = await deps.search.search(ctx, {
          query: a.query,
          mode: a.mode,
          limit: a.limit ?? 10,
          filter: { scope: a.scope, tags: a.tags },
        });
        const results = r.results.map((h) => ({
          memory: presentMemory(h.memory),
          score: h.score,
          signals: { ...h.signals },
          why: Object.entries(h.signals)
            .map(([s, v]) => `${s} #${v.rank}`)
            .join(', '),
        }));
        const reasons = Object.values(r.degradedReasons)
          .map((why) => `: ${why.message}`)
          .join('');
        const head =
          r.degraded.length > 0
            ? `(degraded: ${r.degraded.join(', ')} unavailable${reasons}; answered from the rest)\n`
            : '';
        const body =
          r.results.length === 0
            ? 'No memories match.'
            : r.results.map((h, i) => `${i + 1}. (${results[i]?.why ?? ''}) ${line(h.memory, 300)}`).join('\n');
        return {
          structured: { results, mode: r.mode, degraded: [...r.degraded], degradedReasons: { ...r.degradedReasons } },
          text: head + body,
        };
      },
    }),
    defineTool({
      name: 'get_memory',
      title: 'Get memory',
      description: 'Fetch one memory by id.',
      scope: 'memories:read',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({ id: z.string().min(1).max(100) }),
      output: z.object({ memory: memoryOut }),
      run: async (ctx, a) => {
        const m = await deps.memories.get(ctx, a.id);
        return { structured: { memory: presentMemory(m) }, text: line(m, 4000), resourceId: m.id };
      },
    }),
    defineTool({
      name: 'update_memory',
      title: 'Update memory',
      description:
        'Change a memory’s content, tags or metadata. The previous version is kept in its history. Pass expectedVersion to refuse the change if someone else changed it first.',
      scope: 'memories:write',
      hints: { readOnlyHint: false, idempotentHint: false, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({
        id: z.string().min(1).max(100),
        content: z.string().min(1).optional(),
        tags: z.array(z.string().trim().min(1).max(100)).max(50).optional(),
        metadata: z.record(z.string(), z.unknown()).optional(),
        expectedVersion: z.number().int().min(1).optional(),
      }),
      output: z.object({ memory: memoryOut }),
      run: async (ctx, a) => {
        const m = await deps.memories.update(
          ctx,
          a.id,
          { content: a.content, tags: a.tags, metadata: a.metadata },
          a.expectedVersion,
        );
        return { structured: { memory: presentMemory(m) }, text: `Updated: ${line(m)}`, resourceId: m.id };
      },
    }),
    defineTool({
      name: 'forget',
      title: 'Forget',
      description: 'Delete a memory and its history for good.',
      scope: 'memories:write',
      hints: { readOnlyHint: false, idempotentHint: true, destructiveHint: true, openWorldHint: false },
      input: z.strictObject({ id: z.string().min(1).max(100) }),
      output: z.object({ id: z.string(), deleted: z.boolean() }),
      run: async (ctx, a) => {
        await deps.memories.forget(ctx, a.id);
        return { structured: { id: a.id, deleted: true }, text: `Forgot ${a.id}.`, resourceId: a.id };
      },
    }),
    defineTool({
      name: 'list_memories',
      title: 'List memories',
      description: 'List memories newest first, optionally by scope and tags; page with the returned cursor.',
      scope: 'memories:read',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({
        scope: scopeInput.optional(),
        tags: z.array(z.string().trim().min(1).max(100)).max(20).optional(),
        limit: limit.optional(),
        cursor: z.string().max(200).optional(),
      }),
      output: z.object({ items: z.array(memoryOut), nextCursor: z.string().nullable() }),
      run: async (ctx, a) => {
        const page = await deps.memories.list(ctx, { scope: a.scope, tags: a.tags }, a.limit ?? 20, a.cursor ?? null);
        const text =
          (page.items.length === 0 ? 'No memories.' : page.items.map((m) => line(m, 200)).join('\n')) +
          (page.nextCursor === null ? '' : `\n(more: cursor ${page.nextCursor})`);
        return { structured: { items: page.items.map(presentMemory), nextCursor: page.nextCursor }, text };
      },
    }),
    defineTool({
      name: 'memory_history',
      title: 'Memory history',
      description: 'Every version of a memory, oldest first.',
      scope: 'memories:read',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
      input: z.strictObject({ id: z.string().min(1).max(100) }),
      output: z.object({
        id: z.string(),
        versions: z.array(
          z.object({
            version: z.number().int(),
            content: z.string(),
            tags: z.array(z.string()),
            writtenAt: z.string(),
          }),
        ),
      }),
      run: async (ctx, a) => {
        const versions = await deps.memories.history(ctx, a.id);
        return {
          structured: {
            id: a.id,
            versions: versions.map((v) => ({
              version: v.version,
              content: v.content,
              tags: [...v.tags],
              writtenAt: v.writtenAt.toISOString(),
            })),
          },
          text: versions.map((v) => `v${v.version} ${v.writtenAt.toISOString()}: ${clip(v.content, 300)}`).join('\n'),
          resourceId: a.id,
        };
      },
    }),
  ];
}
