import { z } from 'zod';
import type { GraphService } from '../../domain/graph/graph.service.ts';
import type { RequestContext } from '../../domain/tenancy/tenancy.types.ts';
import { defineTool, type ToolDef } from '../tool.ts';
import { scopeInput } from './memory.tools.ts';

/*
 * The official MCP memory server's tool set (@modelcontextprotocol/server-memory),
 * with its argument shapes and its JSON answers, so agents configured for it can
 * switch. Engram adds an optional `scope` to each tool, and paginates read_graph.
 */

const entity = z.object({
  name: z.string().describe('The name of the entity'),
  entityType: z.string().describe('The type of the entity'),
  observations: z.array(z.string()).describe('Observations associated with the entity'),
});
const relation = z.object({
  from: z.string().describe('The name of the entity where the relation starts'),
  to: z.string().describe('The name of the entity where the relation ends'),
  relationType: z.string().describe('The type of the relation (active voice)'),
});
const graphOut = z.object({ entities: z.array(entity), relations: z.array(relation) });
const done = z.object({ success: z.boolean(), message: z.string() });
const scope = scopeInput.optional().describe('Engram extension: the scope the graph lives in (default: org-wide)');

/** The official server answers with pretty JSON text; so do we. */
const asJson = (v: unknown): string => JSON.stringify(v, null, 2);

export function graphTools(deps: { graph: GraphService }): Array<ToolDef<RequestContext>> {
  const g = deps.graph;
  const write = { readOnlyHint: false, idempotentHint: true, destructiveHint: false, openWorldHint: false } as const;
  const destroy = { readOnlyHint: false, idempotentHint: true, destructiveHint: true, openWorldHint: false } as const;
  const read = { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false } as const;
  return [
    defineTool({
      name: 'create_entities',
      title: 'Create entities',
      description: 'Create multiple new entities in the knowledge graph',
      scope: 'memories:write',
      hints: write,
      input: z.object({ entities: z.array(entity), scope }),
      output: z.object({ entities: z.array(entity) }),
      run: async (ctx, a) => {
        const entities = await g.createEntities(ctx, a.entities, a.scope);
        return { structured: { entities }, text: asJson(entities) };
      },
    }),
    defineTool({
      name: 'create_relations',
      title: 'Create relations',
      description:
        'Create multiple new relations between entities in the knowledge graph. Relations should be in active voice',
      scope: 'memories:write',
      hints: write,
      input: z.object({ relations: z.array(relation), scope }),
      output: z.object({ relations: z.array(relation) }),
      run: async (ctx, a) => {
        const relations = await g.createRelations(ctx, a.relations, a.scope);
        return { structured: { relations }, text: asJson(relations) };
      },
    }),
    defineTool({
      name: 'add_observations',
      title: 'Add observations',
      description: 'Add new observations to existing entities in the knowledge graph',
      scope: 'memories:write',
      hints: write,
      input: z.object({
        observations: z.array(
          z.object({
            entityName: z.string().describe('The name of the entity to add the observations to'),
            contents: z.array(z.string()).describe('An array of observation contents to add'),
          }),
        ),
        scope,
      }),
      output: z.object({
        results: z.array(z.object({ entityName: z.string(), addedObservations: z.array(z.string()) })),
      }),
      run: async (ctx, a) => {
        const results = await g.addObservations(ctx, a.observations, a.scope);
        return { structured: { results }, text: asJson(results) };
      },
    }),
    defineTool({
      name: 'delete_entities',
      title: 'Delete entities',
      description: 'Delete multiple entities and their associated relations from the knowledge graph',
      scope: 'memories:write',
      hints: destroy,
      input: z.object({ entityNames: z.array(z.string()).describe('An array of entity names to delete'), scope }),
      output: done,
      run: async (ctx, a) => {
        await g.deleteEntities(ctx, a.entityNames, a.scope);
        const message = 'Entities deleted successfully';
        return { structured: { success: true, message }, text: message };
      },
    }),
    defineTool({
      name: 'delete_observations',
      title: 'Delete observations',
      description: 'Delete specific observations from entities in the knowledge graph',
      scope: 'memories:write',
      hints: destroy,
      input: z.object({
        deletions: z.array(
          z.object({
            entityName: z.string().describe('The name of the entity containing the observations'),
            observations: z.array(z.string()).describe('An array of observations to delete'),
          }),
        ),
        scope,
      }),
      output: done,
      run: async (ctx, a) => {
        await g.deleteObservations(ctx, a.deletions, a.scope);
        const message = 'Observations deleted successfully';
        return { structured: { success: true, message }, text: message };
      },
    }),
    defineTool({
      name: 'delete_relations',
      title: 'Delete relations',
      description: 'Delete multiple relations from the knowledge graph',
      scope: 'memories:write',
      hints: destroy,
      input: z.object({ relations: z.array(relation).describe('An array of relations to delete'), scope }),
      output: done,
      run: async (ctx, a) => {
        await g.deleteRelations(ctx, a.relations, a.scope);
        const message = 'Relations deleted successfully';
        return { structured: { success: true, message }, text: message };
      },
    }),
    defineTool({
      name: 'read_graph',
      title: 'Read graph',
      description:
        'Read the knowledge graph, one page of entities at a time (with the relations starting from them); pass nextCursor to continue',
      scope: 'memories:read',
      hints: read,
      input: z.object({
        scope,
        limit: z.number().int().min(1).max(500).optional().describe('Entities per page (default 100)'),
        cursor: z.string().max(500).optional(),
      }),
      output: graphOut.extend({ nextCursor: z.string().nullable() }),
      run: async (ctx, a) => {
        const r = await g.readGraph(ctx, { scope: a.scope, limit: a.limit ?? 100, cursor: a.cursor ?? null });
        const page = { entities: r.entities, relations: r.relations, nextCursor: r.nextCursor };
        return { structured: page, text: asJson(page) };
      },
    }),
    defineTool({
      name: 'search_nodes',
      title: 'Search nodes',
      description:
        'Search for nodes in the knowledge graph by meaning and keywords (names, types and observation content)',
      scope: 'memories:read',
      rateClass: 'search',
      hints: read,
      input: z.object({
        query: z.string().describe('The search query to match against entity names, types, and observation content'),
        scope,
        limit: z.number().int().min(1).max(100).optional(),
      }),
      output: graphOut.extend({ degraded: z.array(z.string()) }),
      run: async (ctx, a) => {
        const r = await g.searchNodes(ctx, a.query, { scope: a.scope, limit: a.limit ?? 20 });
        const graph = { entities: r.entities, relations: r.relations };
        return { structured: { ...graph, degraded: [...r.degraded] }, text: asJson(graph) };
      },
    }),
    defineTool({
      name: 'open_nodes',
      title: 'Open nodes',
      description: 'Open specific nodes in the knowledge graph by their names',
      scope: 'memories:read',
      hints: read,
      input: z.object({ names: z.array(z.string()).describe('An array of entity names to retrieve'), scope }),
      output: graphOut,
      run: async (ctx, a) => {
        const r = await g.openNodes(ctx, a.names, a.scope);
        return { structured: r, text: asJson(r) };
      },
    }),
  ];
}
