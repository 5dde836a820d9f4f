-- Why: the knowledge graph of the MCP memory server (entities with typed
-- observations, directed typed relations), stored per org and per scope. The
-- scope columns and scope_key follow memories, so the same name in two scopes
-- is two entities. Entity names are unique per (org, scope); relations key on
-- entity ids and carry the scope in their foreign keys, so a relation can never
-- join two scopes and deleting an entity cascades to its observations and to
-- every relation touching it. Every insert can use ON CONFLICT DO NOTHING, so
-- concurrent clients creating the same things never fail and never lose a write.
-- Observations are unique per entity by a SHA-256 of their content (computed by
-- the app, like memories.content_hash): a btree entry is limited to about 2.7 kB
-- and an observation may be 10,000 characters. `position` (an identity) keeps
-- insertion order. Each entity stores one vector of its text in an untyped
-- pgvector `vector`, like memory_embeddings: the dimension follows the model,
-- and cosine distance runs in SQL over one org and scope (an exact scan; graphs
-- are small, so no HNSW index). `revision` counts content changes and
-- `embedded_revision` says which one the vector was computed from; a stale or
-- missing vector (embedder down, observations changed) is recomputed lazily.
-- Stored tsvectors spare ranking a re-parse; there is no GIN index because
-- candidates come from the scope scan (substring matching needs it anyway).

-- migrate:up
CREATE TABLE graph_entities (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  scope_user text,
  scope_agent text,
  scope_project text,
  scope_session text,
  scope_key text NOT NULL,
  name text NOT NULL CHECK (name <> ''),
  entity_type text NOT NULL CHECK (entity_type <> ''),
  revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
  embedding vector,
  embedding_model text,
  embedded_revision integer,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, name || ' ' || entity_type)) STORED,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, scope_key, name),
  -- Target of the relations' foreign keys; also walks a scope in id (creation) order.
  UNIQUE (org_id, scope_key, id),
  CHECK ((embedding IS NULL) = (embedding_model IS NULL) AND (embedding IS NULL) = (embedded_revision IS NULL))
);

CREATE TABLE graph_observations (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  entity_id uuid NOT NULL,
  position bigint GENERATED ALWAYS AS IDENTITY,
  content text NOT NULL CHECK (content <> ''),
  content_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
  PRIMARY KEY (org_id, entity_id, content_hash),
  FOREIGN KEY (org_id, entity_id) REFERENCES graph_entities (org_id, id) ON DELETE CASCADE
);
CREATE INDEX graph_observations_order ON graph_observations (org_id, entity_id, position);

CREATE TABLE graph_relations (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  scope_key text NOT NULL,
  from_id uuid NOT NULL,
  to_id uuid NOT NULL,
  relation_type text NOT NULL CHECK (relation_type <> ''),
  position bigint GENERATED ALWAYS AS IDENTITY,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, from_id, to_id, relation_type),
  FOREIGN KEY (org_id, scope_key, from_id) REFERENCES graph_entities (org_id, scope_key, id) ON DELETE CASCADE,
  FOREIGN KEY (org_id, scope_key, to_id) REFERENCES graph_entities (org_id, scope_key, id) ON DELETE CASCADE
);
-- Cascades and lookups by target; by source the primary key serves.
CREATE INDEX graph_relations_to ON graph_relations (org_id, to_id);

ALTER TABLE graph_entities ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_entities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON graph_entities TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON graph_entities TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE graph_observations ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_observations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON graph_observations TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON graph_observations TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE graph_relations ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_relations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON graph_relations TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON graph_relations TO engram_system USING (true) WITH CHECK (true);

-- Identity columns need no grant on their sequences.
GRANT SELECT, INSERT, UPDATE, DELETE ON graph_entities, graph_observations, graph_relations
  TO engram_app, engram_system;

-- migrate:down
DROP TABLE graph_relations;
DROP TABLE graph_observations;
DROP TABLE graph_entities;
