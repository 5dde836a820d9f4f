-- Why: vectors are stored per embedding model, so switching models is a
-- re-embed job rather than a schema change. The `embedding` column is an
-- untyped pgvector `vector`; each model gets its own partial HNSW index on
-- `embedding::vector(<dim>)`, created by the app when the model is first
-- registered (on an empty slice it is instant, then it grows incrementally).
-- `content_hash` records which content a vector was computed from, so stale
-- vectors are detected and re-embedded.

-- migrate:up
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE embedding_models (
  name text PRIMARY KEY,
  provider text NOT NULL,
  dimension integer NOT NULL CHECK (dimension > 0 AND dimension <= 16000),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memory_embeddings (
  org_id uuid NOT NULL,
  memory_id uuid NOT NULL,
  model text NOT NULL REFERENCES embedding_models (name),
  content_hash text NOT NULL,
  embedding vector NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, memory_id, model),
  FOREIGN KEY (org_id, memory_id) REFERENCES memories (org_id, id) ON DELETE CASCADE
);

ALTER TABLE memory_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_embeddings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_embeddings TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memory_embeddings TO engram_system USING (true) WITH CHECK (true);

-- The model registry holds no tenant data: readable by the app, written by system.
GRANT SELECT ON embedding_models TO engram_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON embedding_models TO engram_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_embeddings TO engram_app, engram_system;

-- migrate:down
DROP TABLE memory_embeddings;
DROP TABLE embedding_models;
-- The vector extension stays: other schemas in this database may use it.
