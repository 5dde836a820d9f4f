import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphService } from '../../src/domain/graph/graph.service.ts';
import type { Entity, Graph } from '../../src/domain/graph/graph.types.ts';
import { PgTenantDb } from '../../src/storage/postgres/tenant-db.pg.ts';
import { fakeOpenAiEnv, startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.ts';
import { backend, createTestEngram, type TestEngram, type TestOrg } from '../helpers/test-engram.ts';

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const names = (g: { entities: Entity[] }) => g.entities.map((e) => e.name);

/** Vector state of an org's entities, read past RLS: has a vector; computed from the current text; queued. */
async function vectorState(t: TestEngram, orgId: string) {
  return (
    await sql<{ name: string; embedded: boolean; fresh: boolean; queued: boolean }>`
      SELECT e.name, v.entity_id IS NOT NULL AS embedded, v.revision IS NOT DISTINCT FROM e.revision AS fresh,
        EXISTS (SELECT 1 FROM graph_embedding_queue q WHERE q.org_id = e.org_id AND q.entity_id = e.id) AS queued
      FROM graph_entities e LEFT JOIN graph_embeddings v ON v.org_id = e.org_id AND v.entity_id = e.id
      WHERE e.org_id = ${orgId} ORDER BY e.name`.execute(t.engram.database.adminDb)
  ).rows;
}

describe(`${GraphService.name} (${backend})`, () => {
  let t: TestEngram;
  let graph: GraphService;

  beforeAll(async () => {
    t = await createTestEngram();
    graph = t.engram.graph;
  });
  afterAll(async () => t.close());

  const vectors = (org: TestOrg) => vectorState(t, org.orgId);

  describe('the official memory server call sequence', () => {
    it('gives the answers @modelcontextprotocol/server-memory gives', async () => {
      const { ctx } = await t.makeOrg();
      const john = {
        name: 'John_Smith',
        entityType: 'person',
        observations: ['Speaks fluent Spanish', 'Graduated in 2019'],
      };
      const anthropic = { name: 'Anthropic', entityType: 'organization', observations: ['AI safety company'] };
      const claude = { name: 'Claude', entityType: 'model', observations: ['Made by Anthropic'] };

      // create_entities: returns the new ones only.
      expect(await graph.createEntities(ctx, [john, anthropic])).toEqual([john, anthropic]);
      expect(
        await graph.createEntities(ctx, [
          { name: 'Anthropic', entityType: 'company', observations: ['other'] },
          claude,
        ]),
      ).toEqual([claude]);

      // create_relations: duplicates of stored relations are skipped.
      const worksAt = { from: 'John_Smith', to: 'Anthropic', relationType: 'works_at' };
      const madeBy = { from: 'Claude', to: 'Anthropic', relationType: 'made_by' };
      expect(await graph.createRelations(ctx, [worksAt, madeBy])).toEqual([worksAt, madeBy]);
      expect(await graph.createRelations(ctx, [worksAt])).toEqual([]);

      // add_observations: only contents the entity did not have are added and returned.
      expect(
        await graph.addObservations(ctx, [
          { entityName: 'John_Smith', contents: ['Likes espresso', 'Speaks fluent Spanish'] },
        ]),
      ).toEqual([{ entityName: 'John_Smith', addedObservations: ['Likes espresso'] }]);

      // search_nodes: case-insensitive substring of name, type or observation;
      // relations with at least one end among the entities found.
      const found = await graph.searchNodes(ctx, 'ANTHROPIC', { limit: 20 });
      expect(found.degraded).toEqual([]);
      expect([...found.entities].sort(byName)).toEqual([anthropic, claude]);
      expect(found.relations).toEqual([worksAt, madeBy]);
      const people = await graph.searchNodes(ctx, 'perso', { limit: 20 });
      expect(people.entities).toEqual([
        { ...john, observations: ['Speaks fluent Spanish', 'Graduated in 2019', 'Likes espresso'] },
      ]);
      expect(people.relations).toEqual([worksAt]);

      // open_nodes: the named entities (unknown ignored) and the relations touching them.
      const opened = await graph.openNodes(ctx, ['John_Smith', 'Anthropic', 'Nobody']);
      expect(opened).toEqual({
        entities: [
          { ...john, observations: ['Speaks fluent Spanish', 'Graduated in 2019', 'Likes espresso'] },
          anthropic,
        ],
        relations: [worksAt, madeBy],
      });
      expect(await graph.openNodes(ctx, ['john_smith'])).toEqual({ entities: [], relations: [] });

      // delete_observations / delete_relations: what does not exist is ignored.
      await graph.deleteObservations(ctx, [
        { entityName: 'John_Smith', observations: ['Graduated in 2019', 'never said'] },
        { entityName: 'Nobody', observations: ['x'] },
      ]);
      await graph.deleteRelations(ctx, [madeBy, { from: 'Claude', to: 'Anthropic', relationType: 'trained_by' }]);
      expect((await graph.openNodes(ctx, ['Claude', 'Anthropic'])).relations).toEqual([worksAt]);

      // delete_entities: takes the relations touching them along.
      await graph.deleteEntities(ctx, ['Anthropic', 'Nobody']);

      // read_graph: what is left, in creation order.
      expect(await graph.readGraph(ctx, { limit: 100, cursor: null })).toEqual({
        entities: [{ ...john, observations: ['Speaks fluent Spanish', 'Likes espresso'] }, claude],
        relations: [],
        nextCursor: null,
      });
    });
  });

  describe('duplicates and missing entities', () => {
    it('skips duplicate entities, observations and relations, in a call and across calls', async () => {
      const { ctx } = await t.makeOrg();
      const created = await graph.createEntities(ctx, [
        { name: 'A', entityType: 't', observations: ['x', 'y', 'x'] },
        { name: 'A', entityType: 'other', observations: ['z'] },
        { name: 'B', entityType: 't', observations: [] },
      ]);
      expect(created).toEqual([
        { name: 'A', entityType: 't', observations: ['x', 'y'] },
        { name: 'B', entityType: 't', observations: [] },
      ]);
      expect(await graph.createEntities(ctx, [{ name: 'A', entityType: 't', observations: ['w'] }])).toEqual([]);

      const ab = { from: 'A', to: 'B', relationType: 'knows' };
      expect(await graph.createRelations(ctx, [ab, ab, { ...ab, relationType: 'likes' }])).toEqual([
        ab,
        { ...ab, relationType: 'likes' },
      ]);
      expect(await graph.createRelations(ctx, [ab, { from: 'B', to: 'A', relationType: 'knows' }])).toEqual([
        { from: 'B', to: 'A', relationType: 'knows' },
      ]);

      expect(
        await graph.addObservations(ctx, [
          { entityName: 'A', contents: ['y', 'v', 'v'] },
          { entityName: 'A', contents: ['v', 'u'] },
        ]),
      ).toEqual([
        { entityName: 'A', addedObservations: ['v'] },
        { entityName: 'A', addedObservations: ['u'] },
      ]);
      const g = await graph.openNodes(ctx, ['A', 'B']);
      expect(g.entities[0]).toEqual({ name: 'A', entityType: 't', observations: ['x', 'y', 'v', 'u'] });
      expect(g.relations).toHaveLength(3);
    });

    it('refuses a relation to an entity that does not exist, naming it, and stores nothing of the call', async () => {
      const { ctx } = await t.makeOrg();
      await graph.createEntities(ctx, [
        { name: 'A', entityType: 't', observations: [] },
        { name: 'B', entityType: 't', observations: [] },
      ]);
      await expect(
        graph.createRelations(ctx, [
          { from: 'A', to: 'B', relationType: 'r' },
          { from: 'A', to: 'Ghost', relationType: 'r' },
        ]),
      ).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        message: 'Entity with name Ghost not found',
        details: { field: 'relations[1].to', name: 'Ghost' },
      });
      expect((await graph.readGraph(ctx, { limit: 10, cursor: null })).relations).toEqual([]);
    });

    it('refuses observations for an unknown entity with ENTITY_NOT_FOUND, and stores nothing of the call', async () => {
      const { ctx } = await t.makeOrg();
      await graph.createEntities(ctx, [{ name: 'A', entityType: 't', observations: [] }]);
      await expect(
        graph.addObservations(ctx, [
          { entityName: 'A', contents: ['kept?'] },
          { entityName: 'Ghost', contents: ['boo'] },
        ]),
      ).rejects.toMatchObject({ code: 'ENTITY_NOT_FOUND', message: 'Entity with name Ghost not found' });
      expect((await graph.openNodes(ctx, ['A'])).entities[0]?.observations).toEqual([]);
    });

    it('validates input with the field at fault', async () => {
      const { ctx } = await t.makeOrg();
      const cases: Array<[() => Promise<unknown>, string]> = [
        [() => graph.createEntities(ctx, [{ name: '', entityType: 't', observations: [] }]), 'entities[0].name'],
        [
          () => graph.createEntities(ctx, [{ name: 'n'.repeat(201), entityType: 't', observations: [] }]),
          'entities[0].name',
        ],
        [
          () => graph.createEntities(ctx, [{ name: 'n', entityType: 't'.repeat(101), observations: [] }]),
          'entities[0].entityType',
        ],
        [
          () => graph.createEntities(ctx, [{ name: 'n', entityType: 't', observations: ['ok', 'o'.repeat(10_001)] }]),
          'entities[0].observations[1]',
        ],
        [
          () =>
            graph.createEntities(
              ctx,
              Array.from({ length: 101 }, (_, i) => ({ name: `n${i}`, entityType: 't', observations: [] })),
            ),
          'entities',
        ],
        [() => graph.createRelations(ctx, [{ from: 'a', to: 'b', relationType: ' ' }]), 'relations[0].relationType'],
        [
          () => graph.addObservations(ctx, [{ entityName: 'a', contents: ['nul \u0000'] }]),
          'observations[0].contents[0]',
        ],
        [() => graph.openNodes(ctx, ['a'], { project: '' }), 'scope.project'],
        [() => graph.readGraph(ctx, { limit: 0, cursor: null }), 'limit'],
        [() => graph.readGraph(ctx, { limit: 10, cursor: 'not-a-cursor' }), 'cursor'],
        [() => graph.searchNodes(ctx, '   ', { limit: 10 }), 'query'],
      ];
      for (const [call, field] of cases) {
        await expect(call(), field).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field } });
      }
      // Observations of the maximum length are fine.
      expect(
        await graph.createEntities(ctx, [{ name: 'long', entityType: 't', observations: ['o'.repeat(10_000)] }]),
      ).toHaveLength(1);
      expect((await graph.readGraph(ctx, { limit: 10, cursor: null })).entities).toHaveLength(1);
    });
  });

  describe('isolation', () => {
    it('keeps one graph per scope: the same name in two scopes is two entities', async () => {
      const { ctx } = await t.makeOrg();
      const a = { project: 'a' };
      const b = { project: 'b', user: 'ann' };
      await graph.createEntities(ctx, [{ name: 'Atlas', entityType: 'service', observations: ['in a'] }], a);
      expect(
        await graph.createEntities(ctx, [{ name: 'Atlas', entityType: 'map', observations: ['in b'] }], b),
      ).toHaveLength(1);
      await graph.createEntities(ctx, [{ name: 'Zeus', entityType: 'service', observations: [] }], b);

      expect((await graph.openNodes(ctx, ['Atlas'], a)).entities).toEqual([
        { name: 'Atlas', entityType: 'service', observations: ['in a'] },
      ]);
      expect((await graph.openNodes(ctx, ['Atlas'], b)).entities[0]?.entityType).toBe('map');
      expect(await graph.openNodes(ctx, ['Atlas'])).toEqual({ entities: [], relations: [] });
      expect(await graph.openNodes(ctx, ['Atlas'], { project: 'b' })).toEqual({ entities: [], relations: [] });
      await expect(
        graph.createRelations(ctx, [{ from: 'Atlas', to: 'Zeus', relationType: 'r' }], a),
      ).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { name: 'Zeus' } });
      expect(names(await graph.searchNodes(ctx, 'atlas', { limit: 10, scope: a }))).toEqual(['Atlas']);

      await graph.deleteEntities(ctx, ['Atlas'], a);
      expect((await graph.openNodes(ctx, ['Atlas'], b)).entities).toHaveLength(1);
      expect(names(await graph.readGraph(ctx, { scope: b, limit: 10, cursor: null }))).toEqual(['Atlas', 'Zeus']);
    });

    it('does not return an entity of another org', async () => {
      const mine = await t.makeOrg();
      const other = await t.makeOrg();
      await graph.createEntities(other.ctx, [{ name: 'Secret', entityType: 'plan', observations: ['launch date'] }]);
      await graph.createEntities(mine.ctx, [{ name: 'Public', entityType: 'plan', observations: [] }]);

      expect(await graph.openNodes(mine.ctx, ['Secret'])).toEqual({ entities: [], relations: [] });
      expect((await graph.searchNodes(mine.ctx, 'launch date', { limit: 10 })).entities).toEqual([]);
      expect(names(await graph.searchNodes(mine.ctx, 'plan', { limit: 10 }))).toEqual(['Public']);
      expect(names(await graph.readGraph(mine.ctx, { limit: 100, cursor: null }))).toEqual(['Public']);
      await expect(graph.addObservations(mine.ctx, [{ entityName: 'Secret', contents: ['x'] }])).rejects.toMatchObject({
        code: 'ENTITY_NOT_FOUND',
      });
      await expect(
        graph.createRelations(mine.ctx, [{ from: 'Public', to: 'Secret', relationType: 'r' }]),
      ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
      // The same name is free in my org, and deleting mine leaves theirs.
      expect(
        await graph.createEntities(mine.ctx, [{ name: 'Secret', entityType: 'x', observations: [] }]),
      ).toHaveLength(1);
      await graph.deleteEntities(mine.ctx, ['Secret']);
      await graph.deleteObservations(mine.ctx, [{ entityName: 'Secret', observations: ['launch date'] }]);
      expect(await graph.openNodes(other.ctx, ['Secret'])).toEqual({
        entities: [{ name: 'Secret', entityType: 'plan', observations: ['launch date'] }],
        relations: [],
      });
    });
  });

  describe('readGraph', () => {
    it('walks every entity exactly once with limit 2, each relation on the page of its source', async () => {
      const { ctx } = await t.makeOrg();
      const all = ['e1', 'e2', 'e3', 'e4', 'e5'];
      for (const name of all) await graph.createEntities(ctx, [{ name, entityType: 'node', observations: [name] }]);
      await graph.createRelations(ctx, [
        { from: 'e1', to: 'e5', relationType: 'next' },
        { from: 'e4', to: 'e2', relationType: 'next' },
        { from: 'e5', to: 'e1', relationType: 'next' },
      ]);
      const pages: Graph[] = [];
      let cursor: string | null = null;
      do {
        const page = await graph.readGraph(ctx, { limit: 2, cursor });
        pages.push(page);
        cursor = page.nextCursor;
      } while (cursor !== null && pages.length < 10);
      expect(pages.map(names)).toEqual([['e1', 'e2'], ['e3', 'e4'], ['e5']]);
      expect(pages.map((p) => p.relations.map((r) => r.from))).toEqual([['e1'], ['e4'], ['e5']]);
    });
  });

  describe('searchNodes', () => {
    let org: TestOrg;
    beforeAll(async () => {
      org = await t.makeOrg();
      await graph.createEntities(org.ctx, [
        { name: 'Andromeda', entityType: 'galaxy', observations: ['Nearest large spiral galaxy'] },
        { name: 'John_Smith', entityType: 'person', observations: ['Speaks fluent Spanish'] },
        { name: 'Photosynthesis', entityType: 'biology', observations: [] },
        { name: 'Kitchen', entityType: 'room', observations: ['Has an espresso machine'] },
      ]);
      await graph.createRelations(org.ctx, [{ from: 'John_Smith', to: 'Kitchen', relationType: 'owns' }]);
      // Vectors are computed in the background.
      await graph.flushEmbeddings();
    });

    it('finds by case-insensitive substring, like the official server', async () => {
      const r = await graph.searchNodes(org.ctx, 'DROMED', { limit: 10 });
      expect(names(r)).toEqual(['Andromeda']);
      expect(names(await graph.searchNodes(org.ctx, 'presso mach', { limit: 10 }))).toEqual(['Kitchen']);
    });

    it('finds by full text: stemmed words in any order, with the relations touching what it found', async () => {
      const r = await graph.searchNodes(org.ctx, 'speaking Spanish or kitchens', { limit: 10 });
      expect([...r.entities].sort(byName).map((e) => e.name)).toEqual(['John_Smith', 'Kitchen']);
      expect(r.relations).toEqual([{ from: 'John_Smith', to: 'Kitchen', relationType: 'owns' }]);
    });

    it('finds by meaning: a query sharing no word, substring or stem with the entity', async () => {
      // The builtin embedder hashes words and character trigrams: to it, a
      // misspelling is close in meaning (a sentence model would also match synonyms).
      const r = await graph.searchNodes(org.ctx, 'photosinthesis', { limit: 10 });
      expect(names(r)).toEqual(['Photosynthesis']);
      expect(r.degraded).toEqual([]);
    });

    it('answers at most `limit` entities and nothing for an unrelated query', async () => {
      expect((await graph.searchNodes(org.ctx, 'a', { limit: 2 })).entities).toHaveLength(2);
      expect((await graph.searchNodes(org.ctx, 'qqzz', { limit: 10 })).entities).toEqual([]);
    });

    it('keeps vectors current as observations change, in the background', async () => {
      await graph.addObservations(org.ctx, [{ entityName: 'Kitchen', contents: ['Tiled floor'] }]);
      await graph.deleteObservations(org.ctx, [
        { entityName: 'Andromeda', observations: ['Nearest large spiral galaxy'] },
      ]);
      const changed = (await vectors(org)).filter((v) => v.queued).map((v) => v.name);
      expect(changed.every((n) => n === 'Andromeda' || n === 'Kitchen')).toBe(true);
      await graph.flushEmbeddings();
      expect((await vectors(org)).every((v) => v.embedded && v.fresh && !v.queued)).toBe(true);
    });

    it('treats %, _ and \\ in the query as themselves, like a substring', async () => {
      const { ctx } = await t.makeOrg();
      await graph.createEntities(ctx, [
        { name: 'Quota', entityType: 'note', observations: ['50% of a_b\\c'] },
        { name: 'Other', entityType: 'note', observations: ['500 of axb'] },
      ]);
      await graph.flushEmbeddings();
      for (const q of ['50%', 'a_b', 'b\\c', '% of a']) {
        expect(names(await graph.searchNodes(ctx, q, { limit: 10 })), q).toEqual(['Quota']);
      }
    });

    it('finds the entity with a rare word among hundreds matching a common one', async () => {
      const { ctx } = await t.makeOrg();
      const common = Array.from({ length: 300 }, (_, i) => ({
        name: `note-${i}`,
        entityType: 'memo',
        observations: [`meeting notes number ${i}`],
      }));
      for (let i = 0; i < common.length; i += 100) await graph.createEntities(ctx, common.slice(i, i + 100));
      await graph.createEntities(ctx, [{ name: 'Zebra', entityType: 'memo', observations: ['zebra meeting notes'] }]);
      await graph.flushEmbeddings();
      // Every memo matches "meeting", one "zebra" too: it ranks first.
      const r = await graph.searchNodes(ctx, 'zebra meeting', { limit: 5 });
      expect(names(r)[0]).toBe('Zebra');
      expect(r.entities).toHaveLength(5);
    });
  });

  describe('concurrency', () => {
    it('loses nothing when 20 clients create and observe shared and own entities at once', async () => {
      const { ctx } = await t.makeOrg();
      const clients = 20;
      const rounds = 4;
      const results = await Promise.all(
        Array.from({ length: clients }, async (_, i) => {
          const created: string[] = [];
          const added: string[] = [];
          const mine = `client-${i}`;
          // Half the clients list the shared entity first, half last.
          const order = <T>(xs: T[]) => (i % 2 === 0 ? xs : [...xs].reverse());
          const ents = await graph.createEntities(
            ctx,
            order([
              { name: 'hub', entityType: 'shared', observations: ['hub created'] },
              { name: mine, entityType: 'client', observations: [`${mine} born`] },
            ]),
          );
          created.push(...ents.map((e) => e.name));
          for (let round = 0; round < rounds; round++) {
            const r = await graph.addObservations(
              ctx,
              order([
                { entityName: 'hub', contents: [`${mine} round ${round}`, 'common note'] },
                { entityName: mine, contents: [`${mine} note ${round}`] },
              ]),
            );
            added.push(...r.flatMap((x) => x.addedObservations));
          }
          const rels = await graph.createRelations(
            ctx,
            order([
              { from: mine, to: 'hub', relationType: 'uses' },
              { from: 'hub', to: mine, relationType: 'serves' },
            ]),
          );
          return { created, added, rels: rels.length };
        }),
      );

      expect(results.flatMap((r) => r.created).filter((n) => n === 'hub')).toHaveLength(1);
      expect(results.flatMap((r) => r.added).filter((o) => o === 'common note')).toHaveLength(1);
      expect(results.reduce((n, r) => n + r.rels, 0)).toBe(2 * clients);

      const all = await graph.readGraph(ctx, { limit: 500, cursor: null });
      expect(all.entities).toHaveLength(clients + 1);
      expect(all.relations).toHaveLength(2 * clients);
      const hub = all.entities.find((e) => e.name === 'hub');
      expect(hub?.observations).toHaveLength(1 + clients * rounds + 1);
      expect(new Set(hub?.observations).size).toBe(hub?.observations.length);
      for (let i = 0; i < clients; i++) {
        const own = all.entities.find((e) => e.name === `client-${i}`);
        expect(own?.observations).toEqual([
          `client-${i} born`,
          ...Array.from({ length: rounds }, (_, r) => `client-${i} note ${r}`),
        ]);
      }
      // Each client's hub observations are in the order it added them.
      for (let i = 0; i < clients; i++) {
        const mineOnHub = hub?.observations.filter((o) => o.startsWith(`client-${i} round`));
        expect(mineOnHub).toEqual(Array.from({ length: rounds }, (_, r) => `client-${i} round ${r}`));
      }
      // Once the background embedding is done, every entity has the vector of its final text.
      await graph.flushEmbeddings();
      expect((await vectorState(t, ctx.orgId)).filter((v) => !v.embedded || !v.fresh || v.queued)).toEqual([]);
    });
  });
});

describe(`${GraphService.name} with an embedder that fails (${backend})`, () => {
  let fake: FakeOpenAi;
  let t: TestEngram;

  beforeAll(async () => {
    fake = await startFakeOpenAi(384);
    t = await createTestEngram(
      fakeOpenAiEnv(fake, {
        EMBEDDING_BREAKER_THRESHOLD: '3',
        EMBEDDING_BREAKER_HALF_OPEN_MS: '200',
      }),
    );
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it('writes anyway, answers lexically with degraded [vector], and embeds in the background once it is back', async () => {
    const org = await t.makeOrg();
    const g = t.engram.graph;
    const state = async () =>
      (await vectorState(t, org.orgId)).map(({ name, embedded, fresh }) => ({ name, embedded, fresh }));
    await g.createEntities(org.ctx, [
      { name: 'Before', entityType: 'note', observations: ['written while up'] },
      { name: 'Photosynthesis', entityType: 'biology', observations: [] },
    ]);
    await g.flushEmbeddings();
    expect(names(await g.searchNodes(org.ctx, 'photosinthesis', { limit: 10 }))).toEqual(['Photosynthesis']);

    fake.down(true);
    // Only the vector signal finds misspellings (this one is not in the embedding cache).
    expect(await g.searchNodes(org.ctx, 'fotosinthesis', { limit: 10 })).toEqual({
      entities: [],
      relations: [],
      degraded: ['vector'],
    });
    expect(
      await g.createEntities(org.ctx, [{ name: 'During', entityType: 'note', observations: ['written while down'] }]),
    ).toHaveLength(1);
    expect(await g.addObservations(org.ctx, [{ entityName: 'Before', contents: ['changed while down'] }])).toEqual([
      { entityName: 'Before', addedObservations: ['changed while down'] },
    ]);
    // The background embedding fails, and the work stays queued.
    expect((await g.flushEmbeddings()).error).toBeDefined();
    const stale = [
      { name: 'Before', embedded: true, fresh: false },
      { name: 'During', embedded: false, fresh: false },
      { name: 'Photosynthesis', embedded: true, fresh: true },
    ];
    expect(await state()).toEqual(stale);

    const r = await g.searchNodes(org.ctx, 'while down', { limit: 10 });
    expect(r.degraded).toEqual(['vector']);
    expect([...r.entities].sort(byName).map((e) => e.name)).toEqual(['Before', 'During']);

    fake.down(false);
    await new Promise((resolve) => setTimeout(resolve, 250));
    // Back up: a search embeds its query and nothing else, and finds the
    // entity without a vector lexically.
    const inputs = fake.inputs.length;
    const again = await g.searchNodes(org.ctx, 'during', { limit: 10 });
    expect(fake.inputs.slice(inputs)).toEqual(['during']);
    expect(again.degraded).toEqual([]);
    expect(names(again)).toEqual(['During']);
    expect(await state()).toEqual(stale);

    // The next write (or the server's periodic sweep) embeds what is queued.
    await g.createEntities(org.ctx, [{ name: 'After', entityType: 'note', observations: [] }]);
    await g.flushEmbeddings();
    expect((await state()).every((v) => v.embedded && v.fresh)).toBe(true);
  });

  it('embeds only the query when it searches, never an entity whose vector is missing, and still finds it', async () => {
    // A graph whose background embedding never runs on its own, so nothing but the search calls the embedder.
    const g = new GraphService({
      tenantDb: new PgTenantDb(t.engram.database.db, { canActAsSystem: true }),
      embedder: t.engram.embedder,
      embeddingTiming: { idleMs: 600_000, maxDelayMs: 600_000 },
    });
    const org = await t.makeOrg();
    fake.down(true);
    await g.createEntities(org.ctx, [{ name: 'Unembedded', entityType: 'note', observations: ['written while down'] }]);
    fake.down(false);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const before = fake.inputs.length;
    const r = await g.searchNodes(org.ctx, 'while down', { limit: 10 });
    expect(fake.inputs.slice(before)).toEqual(['while down']);
    expect(r.degraded).toEqual([]);
    expect(names(r)).toEqual(['Unembedded']);
    expect((await vectorState(t, org.orgId))[0]).toMatchObject({ embedded: false, queued: true });
    await g.close();
  });

  it('sweeps what is queued in every org (the server runs it periodically)', async () => {
    const org = await t.makeOrg();
    const g = t.engram.graph;
    fake.down(true);
    await g.createEntities(org.ctx, [{ name: 'Lonely', entityType: 'note', observations: ['never embedded'] }]);
    await g.flushEmbeddings();
    fake.down(false);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect((await vectorState(t, org.orgId))[0]).toMatchObject({ embedded: false, queued: true });
    const swept = await g.embedStale();
    expect(swept.error).toBeUndefined();
    expect((await vectorState(t, org.orgId))[0]).toMatchObject({ embedded: true, fresh: true, queued: false });
  });
});
