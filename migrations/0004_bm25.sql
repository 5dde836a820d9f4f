-- Why: BM25 ranks keyword matches better than ts_rank_cd (term saturation and
-- length normalisation). The pg_textsearch extension provides it where
-- present (always in the embedded store; optional on PostgreSQL servers).
-- Where it is missing this migration does nothing and lexical search ranks
-- with ts_rank_cd over the stored tsvector. Candidates always come from the
-- GIN index; BM25 only orders them.
-- Note: BM25 term statistics are computed over the whole index, i.e. across
-- orgs. Scores can thus shift slightly with other tenants' data (never rows).

-- migrate:up
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_textsearch') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_textsearch;
      CREATE INDEX memories_bm25 ON memories USING bm25 (content) WITH (text_config = 'english');
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'pg_textsearch present but unusable, lexical search uses ts_rank_cd: %', SQLERRM;
    END;
  END IF;
END $$;

-- migrate:down
DROP INDEX IF EXISTS memories_bm25;
