-- Why: code search (issue 6) ranks chunks of source, not whole files: one
-- chunk per function, method and class header (the parser's symbol spans),
-- large symbols split by lines, files without symbols cut into windows. A
-- chunk keeps its doc comment apart from its code (`doc`, `content`) and
-- stores `text`, what is embedded, and `search_text`, the identifier-split
-- tokens the app derives (`parseJSONFile` → `parse json file parsejsonfile`)
-- from which the stored tsvector is generated: the same stored tsvector + GIN
-- shape as memories (0002). `file_hash` is the content hash of the file the
-- chunk was cut from, so a job re-chunks only files whose hash moved on.
-- Deleting a file (or its repo) cascades to its chunks and their vectors.
-- Vectors are stored per model like memory vectors (0003): an untyped
-- `vector` column and a partial HNSW index per model, created by the app when
-- the model is registered. BM25 (pg_textsearch) orders lexical candidates
-- where 0004 installed the extension; elsewhere ts_rank_cd does. Like every
-- tenant table: `org_id` in every key, RLS enabled and FORCEd, two policies.

-- migrate:up
CREATE TABLE code_chunks (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  repo_id uuid NOT NULL,
  file_id uuid NOT NULL,
  id uuid NOT NULL,
  -- The symbol the chunk is (NULL for windows of files without symbols); no
  -- foreign key: re-indexing replaces symbols, and the chunk job follows.
  symbol_id uuid,
  path text NOT NULL,
  language text NOT NULL,
  kind text NOT NULL,
  name text NOT NULL,
  qualified_name text,
  -- 1 unless a large symbol was split into several chunks.
  part integer NOT NULL DEFAULT 1 CHECK (part >= 1),
  -- One-based, inclusive.
  start_line integer NOT NULL,
  end_line integer NOT NULL,
  doc text,
  content text NOT NULL,
  text text NOT NULL,
  content_hash text NOT NULL,
  file_hash text NOT NULL,
  search_text text NOT NULL,
  search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, search_text)) STORED,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, file_id) REFERENCES code_files (org_id, id) ON DELETE CASCADE,
  CHECK (end_line >= start_line)
);
CREATE INDEX code_chunks_search_tsv ON code_chunks USING gin (search_tsv);
CREATE INDEX code_chunks_file ON code_chunks (org_id, file_id);
CREATE INDEX code_chunks_repo ON code_chunks (org_id, repo_id);
CREATE INDEX code_chunks_symbol ON code_chunks (org_id, symbol_id) WHERE symbol_id IS NOT NULL;

CREATE TABLE code_chunk_embeddings (
  org_id uuid NOT NULL,
  chunk_id uuid NOT NULL,
  model text NOT NULL REFERENCES embedding_models (name),
  content_hash text NOT NULL,
  embedding vector NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, chunk_id, model),
  FOREIGN KEY (org_id, chunk_id) REFERENCES code_chunks (org_id, id) ON DELETE CASCADE
);

ALTER TABLE code_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_chunks TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_chunks TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE code_chunk_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_chunk_embeddings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_chunk_embeddings TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_chunk_embeddings TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON code_chunks, code_chunk_embeddings TO engram_app, engram_system;

-- BM25 over the identifier-split tokens, wherever 0004 could install pg_textsearch.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_textsearch') THEN
    BEGIN
      CREATE INDEX code_chunks_bm25 ON code_chunks USING bm25 (search_text) WITH (text_config = 'english');
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'pg_textsearch present but unusable, code search uses ts_rank_cd: %', SQLERRM;
    END;
  END IF;
END $$;

-- migrate:down
DROP TABLE code_chunk_embeddings;
DROP TABLE code_chunks;
