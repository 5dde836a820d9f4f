-- Why: the knowledge graph at scale (issue 15). With 10,000 entities one
-- search_nodes through `engram mcp` took 117 s (the official memory server:
-- 21 ms), open_nodes and add_observations 2–3 times the official's. 0006
-- assumed graphs are small and scanned a scope for every search, and with no
-- planner statistics (the embedded store has no autovacuum) PostgreSQL took
-- the scope for one row: the substring match became a nested loop rescanning
-- every observation per entity (1,999,000 rows removed by its join filter at
-- 2,000 entities), and lookups by name walked the whole scope in id order.
-- Every search and write also scanned the scope for stale vectors to embed.
-- Candidates now come from indexes, and the app ranks only those:
-- (1) Substring matching (the official semantics) through trigram GIN indexes
--     on lower(name), lower(entity_type) and lower(content), where pg_trgm
--     is available (always in the embedded store; a contrib module managed
--     PostgreSQL services offer). Without it the same LIKE queries scan.
-- (2) Full text through GIN indexes on the stored tsvectors 0006 kept.
--     Observations carry their entity's scope_key (part of their foreign
--     key, so it cannot disagree): a match is filtered by scope without a
--     join, which the planner had turned into hashing the whole scope.
-- (3) Vectors move to graph_embeddings, one row per entity with the revision
--     of the text it was computed from, shaped like memory_embeddings: the app
--     gives each model a partial HNSW index when it registers the model. In
--     the entity row a vector (1.5 kB) was copied, and re-inserted into every
--     index, by each revision bump; now a bump touches no indexed column and
--     can be a HOT update (fillfactor 85 leaves room on the page).
-- (4) graph_embedding_queue lists the entities whose vector is missing or
--     older than their text, so the background embedder finds them by key
--     instead of comparing revisions across the whole graph; vectors of
--     another model are found by (org_id, model).
-- The GIN indexes are built with fastupdate off: a pending list is scanned
-- linearly by every search until a vacuum merges it.
-- Down moves the vectors back into the entity rows.

-- migrate:up
CREATE TABLE graph_embeddings (
  org_id uuid NOT NULL,
  entity_id uuid NOT NULL,
  scope_key text NOT NULL,
  model text NOT NULL,
  -- The entity's revision the vector was computed from.
  revision integer NOT NULL,
  embedding vector NOT NULL,
  PRIMARY KEY (org_id, entity_id),
  FOREIGN KEY (org_id, scope_key, entity_id) REFERENCES graph_entities (org_id, scope_key, id) ON DELETE CASCADE
);
-- Vectors of another model (a model switch: re-embed), and the exact scan of a scope.
CREATE INDEX graph_embeddings_model ON graph_embeddings (org_id, model, scope_key);

CREATE TABLE graph_embedding_queue (
  org_id uuid NOT NULL,
  scope_key text NOT NULL,
  entity_id uuid NOT NULL,
  PRIMARY KEY (org_id, scope_key, entity_id),
  FOREIGN KEY (org_id, scope_key, entity_id) REFERENCES graph_entities (org_id, scope_key, id) ON DELETE CASCADE
);

INSERT INTO graph_embeddings (org_id, entity_id, scope_key, model, revision, embedding)
  SELECT org_id, id, scope_key, embedding_model, embedded_revision, embedding FROM graph_entities
  WHERE embedding IS NOT NULL;
INSERT INTO graph_embedding_queue (org_id, scope_key, entity_id)
  SELECT org_id, scope_key, id FROM graph_entities WHERE embedded_revision IS DISTINCT FROM revision;
ALTER TABLE graph_entities DROP CONSTRAINT graph_entities_check;
ALTER TABLE graph_entities DROP COLUMN embedding;
ALTER TABLE graph_entities DROP COLUMN embedding_model;
ALTER TABLE graph_entities DROP COLUMN embedded_revision;
ALTER TABLE graph_entities SET (fillfactor = 85);

ALTER TABLE graph_observations ADD COLUMN scope_key text;
UPDATE graph_observations o SET scope_key = e.scope_key
  FROM graph_entities e WHERE e.org_id = o.org_id AND e.id = o.entity_id;
ALTER TABLE graph_observations ALTER COLUMN scope_key SET NOT NULL;
ALTER TABLE graph_observations DROP CONSTRAINT graph_observations_org_id_entity_id_fkey;
ALTER TABLE graph_observations ADD CONSTRAINT graph_observations_entity_fkey FOREIGN KEY (org_id, scope_key, entity_id)
  REFERENCES graph_entities (org_id, scope_key, id) ON DELETE CASCADE;

CREATE INDEX graph_entities_search_tsv ON graph_entities USING gin (search_tsv) WITH (fastupdate = off);
CREATE INDEX graph_observations_search_tsv ON graph_observations USING gin (search_tsv) WITH (fastupdate = off);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_trgm;
      CREATE INDEX graph_entities_trgm ON graph_entities
        USING gin (lower(name) gin_trgm_ops, lower(entity_type) gin_trgm_ops) WITH (fastupdate = off);
      CREATE INDEX graph_observations_trgm ON graph_observations
        USING gin (lower(content) gin_trgm_ops) WITH (fastupdate = off);
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'pg_trgm present but unusable, substring search scans: %', SQLERRM;
    END;
  END IF;
END $$;

ALTER TABLE graph_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_embeddings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON graph_embeddings TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON graph_embeddings TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE graph_embedding_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_embedding_queue FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON graph_embedding_queue TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON graph_embedding_queue TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON graph_embeddings, graph_embedding_queue TO engram_app, engram_system;

-- migrate:down
DROP INDEX IF EXISTS graph_observations_trgm;
DROP INDEX IF EXISTS graph_entities_trgm;
DROP INDEX graph_observations_search_tsv;
DROP INDEX graph_entities_search_tsv;
ALTER TABLE graph_observations DROP CONSTRAINT graph_observations_entity_fkey;
ALTER TABLE graph_observations ADD CONSTRAINT graph_observations_org_id_entity_id_fkey FOREIGN KEY (org_id, entity_id)
  REFERENCES graph_entities (org_id, id) ON DELETE CASCADE;
ALTER TABLE graph_observations DROP COLUMN scope_key;
ALTER TABLE graph_entities RESET (fillfactor);
ALTER TABLE graph_entities ADD COLUMN embedding vector;
ALTER TABLE graph_entities ADD COLUMN embedding_model text;
ALTER TABLE graph_entities ADD COLUMN embedded_revision integer;
UPDATE graph_entities e SET embedding = v.embedding, embedding_model = v.model, embedded_revision = v.revision
  FROM graph_embeddings v WHERE v.org_id = e.org_id AND v.entity_id = e.id;
ALTER TABLE graph_entities ADD CONSTRAINT graph_entities_check
  CHECK ((embedding IS NULL) = (embedding_model IS NULL) AND (embedding IS NULL) = (embedded_revision IS NULL));
DROP TABLE graph_embedding_queue;
DROP TABLE graph_embeddings;
-- pg_trgm stays: other schemas in this database may use it.
