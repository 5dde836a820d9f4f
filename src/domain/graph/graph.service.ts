import { v7 as uuidv7 } from 'uuid';
import { AppError, errors } from '../../errors.ts';
import type { Embedder } from '../../ports/embedder.ts';
import type {
  GraphEntityRecord,
  GraphStore,
  NewGraphEntity,
  RankedEntityId,
  SystemStore,
  TenantDb,
} from '../../ports/tenant-db.ts';
import { scopeKey } from '../memory/memory.service.ts';
import { SCOPE_FIELDS, type MemoryScope } from '../memory/memory.types.ts';
import { RRF_K, queryTerms } from '../search/search.service.ts';
import type { Signal } from '../search/search.types.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import {
  DEFAULT_GRAPH_LIMITS,
  type AddedObservations,
  type Entity,
  type EntityInput,
  type Graph,
  type GraphLimits,
  type GraphPage,
  type GraphSearchResult,
  type ObservationAddition,
  type ObservationDeletion,
  type ReadGraphOptions,
  type Relation,
  type SearchNodesOptions,
} from './graph.types.ts';
import { GraphEmbeddingService, type EmbeddingReport, type GraphEmbeddingTiming } from './graph-embedding.service.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Rows written between two checks of the planner statistics. The check is a
 * catalog query; the ANALYZE it may run happens about log(N) times while a
 * graph grows to N rows (each time it has grown by 10 %).
 */
const ANALYZE_CHECK_ROWS = 200;

const toEntity = (r: GraphEntityRecord): Entity => ({
  name: r.name,
  entityType: r.entityType,
  observations: [...r.observations],
});

const unique = <T>(xs: readonly T[]): T[] => [...new Set(xs)];

interface ResolvedScope {
  readonly scope: MemoryScope;
  readonly key: string;
}

/**
 * The knowledge graph, with the semantics of the official MCP memory server
 * (creating what exists is skipped, deleting what is missing is ignored) and
 * two deliberate differences: a relation to an entity that does not exist is
 * refused, and search is hybrid (substring and full text fused with vector
 * similarity by reciprocal rank). Each graph lives in one org and one scope.
 *
 * Neither reads nor writes wait for the embedder: a write commits with the
 * entities it created or changed queued for embedding, and
 * {@link GraphEmbeddingService} computes their vectors in the background; a
 * search embeds only its query. Until an entity has a current vector, search
 * finds it lexically (or by its previous vector). If the embedder is down the
 * write still succeeds, and the work waits in the queue.
 */
export class GraphService {
  private readonly limits: GraphLimits;
  private readonly embeddings: GraphEmbeddingService;
  /** Rows written since the planner statistics were last checked (see {@link ANALYZE_CHECK_ROWS}). */
  private written = 0;
  private analyzing: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      readonly tenantDb: TenantDb;
      readonly embedder: Embedder;
      /** Org ids for the periodic sweep; planner statistics as the graph grows. */
      readonly system?: Pick<SystemStore, 'findOrgIds' | 'analyzeGraph'> | undefined;
      readonly limits?: Partial<GraphLimits>;
      /** When the background embedding runs (defaults: 200 ms idle, 5 s at most). */
      readonly embeddingTiming?: Partial<GraphEmbeddingTiming> | undefined;
      readonly onEmbedError?: (e: unknown) => void;
      /** Refreshing planner statistics failed (the write it followed succeeded). */
      readonly onMaintenanceError?: (e: unknown) => void;
    },
  ) {
    this.limits = {
      ...DEFAULT_GRAPH_LIMITS,
      ...Object.fromEntries(Object.entries(deps.limits ?? {}).filter(([, v]) => v !== undefined)),
    };
    this.embeddings = new GraphEmbeddingService({
      tenantDb: deps.tenantDb,
      embedder: deps.embedder,
      timing: deps.embeddingTiming,
      onEmbedError: deps.onEmbedError,
      onStored: (n) => this.wrote(n),
    });
  }

  /** Creates the entities whose name is new in the scope; returns only those. */
  async createEntities(ctx: RequestContext, entities: readonly EntityInput[], scope?: MemoryScope): Promise<Entity[]> {
    const s = this.resolveScope(scope);
    this.checkList(entities, 'entities');
    const rows: NewGraphEntity[] = [];
    const seen = new Set<string>();
    entities.forEach((e, i) => {
      const name = this.checkText(e?.name, `entities[${i}].name`, this.limits.nameChars);
      const entityType = this.checkText(e.entityType, `entities[${i}].entityType`, this.limits.typeChars);
      const observations = this.checkObservations(e.observations, `entities[${i}].observations`);
      // Like the official server: the first of several with one name wins.
      if (seen.has(name)) return;
      seen.add(name);
      rows.push({ id: uuidv7(), name, entityType, observations });
    });
    if (rows.length === 0) return [];
    const created = await this.write(ctx, async (graph) => {
      const ids = new Set(await graph.insertEntities(s.scope, s.key, rows));
      const result = rows.filter((r) => ids.has(r.id));
      return { result, changed: [...ids], rows: result.reduce((n, r) => n + 1 + r.observations.length, 0) };
    });
    return created.map((r) => ({ name: r.name, entityType: r.entityType, observations: [...r.observations] }));
  }

  /**
   * Creates the relations not present yet; returns only those. Both ends must
   * exist in the scope (the official server would store a dangling relation).
   */
  async createRelations(ctx: RequestContext, relations: readonly Relation[], scope?: MemoryScope): Promise<Relation[]> {
    const s = this.resolveScope(scope);
    const wanted = this.checkRelations(relations);
    if (wanted.length === 0) return [];
    const created = await this.deps.tenantDb.withTenant(ctx.orgId, async ({ graph }) => {
      const names = unique(wanted.flatMap((r) => [r.from, r.to]));
      const found = new Map((await graph.lockEntities(s.key, names)).map((e) => [e.name, e.id]));
      for (const r of wanted) {
        for (const end of ['from', 'to'] as const) {
          if (!found.has(r[end])) {
            throw errors.validation(`Entity with name ${r[end]} not found`, {
              field: `relations[${r.index}].${end}`,
              name: r[end],
            });
          }
        }
      }
      const key = (fromId: string, toId: string, type: string) => JSON.stringify([fromId, toId, type]);
      const inserted = await graph.insertRelations(
        s.key,
        wanted.map((r) => ({
          fromId: found.get(r.from) ?? '',
          toId: found.get(r.to) ?? '',
          relationType: r.relationType,
        })),
      );
      const created = new Set(inserted.map((r) => key(r.fromId, r.toId, r.relationType)));
      return wanted
        .filter((r) => created.has(key(found.get(r.from) ?? '', found.get(r.to) ?? '', r.relationType)))
        .map((r) => ({ from: r.from, to: r.to, relationType: r.relationType }));
    });
    await this.wrote(created.length);
    return created;
  }

  /**
   * Adds observations an entity does not have yet. All or nothing: an unknown
   * entity fails the whole call with ENTITY_NOT_FOUND, like the official server.
   */
  async addObservations(
    ctx: RequestContext,
    items: readonly ObservationAddition[],
    scope?: MemoryScope,
  ): Promise<AddedObservations[]> {
    const s = this.resolveScope(scope);
    this.checkList(items, 'observations');
    const wanted = items.map((o, i) => ({
      entityName: this.checkText(o?.entityName, `observations[${i}].entityName`, this.limits.nameChars),
      contents: this.checkObservations(o.contents, `observations[${i}].contents`),
    }));
    if (wanted.length === 0) return [];
    return this.write(ctx, async (graph) => {
      const ids = new Map(
        (await graph.lockEntities(s.key, unique(wanted.map((w) => w.entityName)))).map((e) => [e.name, e.id]),
      );
      const missing = wanted.find((w) => !ids.has(w.entityName));
      if (missing !== undefined) throw errors.entityNotFound(missing.entityName);
      const rows = wanted.flatMap((w) =>
        w.contents.map((content) => ({ entityId: ids.get(w.entityName) ?? '', content })),
      );
      const inserted = await graph.insertObservations(s.key, rows);
      // Attribute each new content to the first item that asked for it.
      const fresh = new Set(inserted.map((r) => JSON.stringify([r.entityId, r.content])));
      const result = wanted.map((w) => {
        const id = ids.get(w.entityName) ?? '';
        const addedObservations = w.contents.filter((c) => fresh.delete(JSON.stringify([id, c])));
        return { entityName: w.entityName, addedObservations };
      });
      return { result, changed: unique(inserted.map((r) => r.entityId)), rows: inserted.length };
    });
  }

  /** Deletes entities with their observations and every relation touching them; unknown names are ignored. */
  async deleteEntities(ctx: RequestContext, names: readonly string[], scope?: MemoryScope): Promise<void> {
    const s = this.resolveScope(scope);
    const wanted = this.checkNames(names, 'entityNames');
    if (wanted.length === 0) return;
    await this.wrote(
      await this.deps.tenantDb.withTenant(ctx.orgId, ({ graph }) => graph.deleteEntities(s.key, wanted)),
    );
  }

  /** Deletes observations; unknown entities and contents are ignored. */
  async deleteObservations(
    ctx: RequestContext,
    items: readonly ObservationDeletion[],
    scope?: MemoryScope,
  ): Promise<void> {
    const s = this.resolveScope(scope);
    this.checkList(items, 'deletions');
    const wanted = items.map((d, i) => ({
      entityName: this.checkText(d?.entityName, `deletions[${i}].entityName`, this.limits.nameChars),
      observations: this.checkObservations(d.observations, `deletions[${i}].observations`),
    }));
    if (wanted.length === 0) return;
    await this.write(ctx, async (graph) => {
      const ids = new Map(
        (await graph.lockEntities(s.key, unique(wanted.map((w) => w.entityName)))).map((e) => [e.name, e.id]),
      );
      const rows = wanted.flatMap((w) => {
        const entityId = ids.get(w.entityName);
        return entityId === undefined ? [] : w.observations.map((content) => ({ entityId, content }));
      });
      const changed = rows.length === 0 ? [] : await graph.deleteObservations(rows);
      return { result: undefined, changed, rows: changed.length };
    });
  }

  /** Deletes relations; those that do not exist are ignored. */
  async deleteRelations(ctx: RequestContext, relations: readonly Relation[], scope?: MemoryScope): Promise<void> {
    const s = this.resolveScope(scope);
    const wanted = this.checkRelations(relations);
    if (wanted.length === 0) return;
    await this.wrote(
      await this.deps.tenantDb.withTenant(ctx.orgId, ({ graph }) => graph.deleteRelations(s.key, wanted)),
    );
  }

  /**
   * One page of entities in creation order, with the relations that start
   * from them (a relation is thus listed once, on the page of its source).
   */
  async readGraph(ctx: RequestContext, opts: ReadGraphOptions): Promise<GraphPage> {
    const s = this.resolveScope(opts.scope);
    const limit = this.checkLimit(opts.limit, this.limits.pageLimit);
    const afterId = opts.cursor === null ? null : decodeCursor(opts.cursor);
    this.embeddings.touched();
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ graph }) => {
      const rows = await graph.findEntityPage(s.key, limit + 1, afterId);
      const page = rows.slice(0, limit);
      const relations = await graph.findRelationsFrom(page.map((e) => e.id));
      const last = page.at(-1);
      return {
        entities: page.map(toEntity),
        relations,
        nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.id) : null,
      };
    });
  }

  /**
   * Hybrid search: (a) lexical — the official semantics (the query as a
   * case-insensitive substring of the name, the type or an observation) plus
   * full-text matches of its words, substring matches first; (b) vector —
   * cosine similarity of the query to each entity's text, above
   * `minSimilarity`. Fused by reciprocal rank (k = 60). Relations are those
   * with at least one end among the entities returned, as the current official
   * server answers (older releases required both ends), so callers see the
   * connections to nodes outside the result. If the embedder fails, the answer
   * is lexical only and says `degraded: ['vector']`. Only the query is
   * embedded: an entity whose vector is missing or stale (written while the
   * embedder was down) is found lexically until a write or the background
   * sweep embeds it.
   */
  async searchNodes(ctx: RequestContext, query: string, opts: SearchNodesOptions): Promise<GraphSearchResult> {
    const s = this.resolveScope(opts.scope);
    this.checkText(query, 'query', this.limits.queryChars);
    const limit = this.checkLimit(opts.limit, this.limits.searchLimit);
    const { embedder, tenantDb } = this.deps;
    this.embeddings.touched();

    const degraded: Signal[] = [];
    let queryVector: Float32Array | undefined;
    try {
      [queryVector] = await embedder.embed([query]);
    } catch (e) {
      if (e instanceof AppError && e.code === 'EMBEDDING_DIMENSION_MISMATCH') throw e;
      this.deps.onEmbedError?.(e);
      degraded.push('vector');
    }

    // Lexical candidates: enough that every substring match ranks before
    // full-text ones. Vector: twice the answer, enough to fill it with what
    // the lexical signal lacks; each further rank weighs less in the fusion,
    // while the HNSW scan costs in proportion (ef_search).
    const candidates = Math.min(Math.max(limit * 4, 40), 200);
    const nearest = Math.min(Math.max(limit * 2, 20), 200);
    return tenantDb.withTenant(ctx.orgId, async ({ graph }) => {
      const found = await graph.searchCandidates(s.key, {
        text: query,
        terms: queryTerms(query),
        limit: candidates,
        vector: queryVector === undefined ? undefined : { vector: queryVector, model: embedder.model, limit: nearest },
      });
      const vector = found.vector.filter((h) => h.score >= this.limits.minSimilarity);
      const ids = fuseIds([found.lexical, vector], limit);
      if (ids.length === 0) return { entities: [], relations: [], degraded };
      const nodes = await graph.findNodes(s.key, { ids });
      const byId = new Map(nodes.entities.map((e) => [e.id, e]));
      const entities = ids.flatMap((id) => {
        const e = byId.get(id);
        return e === undefined ? [] : [toEntity(e)];
      });
      return { entities, relations: nodes.relations, degraded };
    });
  }

  /** The named entities (unknown names ignored) and the relations touching them (see searchNodes). */
  async openNodes(ctx: RequestContext, names: readonly string[], scope?: MemoryScope): Promise<Graph> {
    const s = this.resolveScope(scope);
    const wanted = this.checkNames(names, 'names');
    if (wanted.length === 0) return { entities: [], relations: [] };
    this.embeddings.touched();
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ graph }) => {
      const nodes = await graph.findNodes(s.key, { names: wanted });
      return { entities: nodes.entities.map(toEntity), relations: nodes.relations };
    });
  }

  /**
   * Embeds every queued or stale entity of every org (written while the
   * embedder was down, before a restart, or with another model): the
   * server's periodic sweep. Stops at the first embedder failure.
   */
  async embedStale(): Promise<EmbeddingReport> {
    const system = this.deps.system;
    if (system === undefined) return { embedded: 0 };
    return this.embeddings.embedOrgs(await system.findOrgIds());
  }

  /** Embeds what this process's writes queued, now; resolves when done (tests, benchmarks, shutdown). */
  flushEmbeddings(): Promise<EmbeddingReport> {
    return this.embeddings.flush();
  }

  /** Stops the background embedding (queued work stays in the store for the next start). */
  close(): Promise<void> {
    return this.embeddings.close();
  }

  /** Runs a write in one tenant transaction; what it queued is embedded in the background. */
  private async write<T>(
    ctx: RequestContext,
    fn: (graph: GraphStore) => Promise<{ result: T; changed: string[]; rows: number }>,
  ): Promise<T> {
    const r = await this.deps.tenantDb.withTenant(ctx.orgId, ({ graph }) => fn(graph));
    if (r.changed.length > 0) this.embeddings.queued(ctx.orgId);
    await this.wrote(r.rows);
    return r.result;
  }

  /**
   * Counts rows written and, every {@link ANALYZE_CHECK_ROWS}, lets the store
   * refresh planner statistics of the tables that grew past autovacuum's
   * threshold: the embedded store has no autovacuum, and PostgreSQL's runs
   * up to a minute behind a bulk load. Never fails the write.
   */
  private async wrote(rows: number): Promise<void> {
    const system = this.deps.system;
    if (system === undefined || rows === 0) return;
    this.written += rows;
    if (this.written < ANALYZE_CHECK_ROWS || this.analyzing !== undefined) return;
    this.written = 0;
    this.analyzing = system
      .analyzeGraph()
      .then(
        () => undefined,
        (e: unknown) => this.deps.onMaintenanceError?.(e),
      )
      .finally(() => {
        this.analyzing = undefined;
      });
    await this.analyzing;
  }

  private resolveScope(scope: MemoryScope | undefined): ResolvedScope {
    const clean: Record<string, string> = {};
    for (const f of SCOPE_FIELDS) {
      const v = scope?.[f];
      if (v !== undefined) clean[f] = this.checkText(v, `scope.${f}`, 200);
    }
    return { scope: clean, key: scopeKey(clean) };
  }

  private checkText(value: unknown, field: string, max: number): string {
    if (typeof value !== 'string') throw errors.validation(`${field} must be a string`, { field });
    if (value.trim().length === 0) throw errors.validation(`${field} must not be empty`, { field });
    if (value.length > max) throw errors.validation(`${field} is longer than ${max} characters`, { field, max });
    // PostgreSQL text cannot hold NUL.
    if (value.includes('\u0000')) throw errors.validation(`${field} must not contain NUL characters`, { field });
    return value;
  }

  private checkList(value: unknown, field: string): void {
    if (!Array.isArray(value)) throw errors.validation(`${field} must be an array`, { field });
    if (value.length > this.limits.maxItems) {
      throw errors.validation(`${field} has more than ${this.limits.maxItems} items`, {
        field,
        max: this.limits.maxItems,
      });
    }
  }

  private checkObservations(value: readonly string[], field: string): string[] {
    this.checkList(value, field);
    return unique(value.map((o, j) => this.checkText(o, `${field}[${j}]`, this.limits.observationChars)));
  }

  private checkNames(value: readonly string[], field: string): string[] {
    this.checkList(value, field);
    return unique(value.map((n, i) => this.checkText(n, `${field}[${i}]`, this.limits.nameChars)));
  }

  /** Validated relations, deduplicated (first wins), each with its index in the input. */
  private checkRelations(relations: readonly Relation[]): Array<Relation & { index: number }> {
    this.checkList(relations, 'relations');
    const seen = new Set<string>();
    const out: Array<Relation & { index: number }> = [];
    relations.forEach((r, index) => {
      const from = this.checkText(r?.from, `relations[${index}].from`, this.limits.nameChars);
      const to = this.checkText(r.to, `relations[${index}].to`, this.limits.nameChars);
      const relationType = this.checkText(r.relationType, `relations[${index}].relationType`, this.limits.typeChars);
      const key = JSON.stringify([from, to, relationType]);
      if (seen.has(key)) return;
      seen.add(key);
      out.push({ from, to, relationType, index });
    });
    return out;
  }

  private checkLimit(limit: number, max: number): number {
    if (!Number.isInteger(limit) || limit < 1) {
      throw errors.validation('limit must be a positive integer', { field: 'limit' });
    }
    return Math.min(limit, max);
  }
}

/** Fuses ranked id lists by reciprocal rank (score = Σ 1 / (k + rank)); ties go to the older entity. */
export function fuseIds(lists: ReadonlyArray<readonly RankedEntityId[]>, limit: number): string[] {
  const scores = new Map<string, number>();
  for (const list of lists) {
    list.forEach((r, i) => scores.set(r.id, (scores.get(r.id) ?? 0) + 1 / (RRF_K + i + 1)));
  }
  return [...scores.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, limit)
    .map(([id]) => id);
}

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!UUID_RE.test(id)) throw errors.validation('cursor is not valid', { field: 'cursor' });
  return id;
}
