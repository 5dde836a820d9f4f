-- Why: lexical memory search must rank with one BM25, the same on PGlite and
-- on stock PostgreSQL, with statistics from the org's own corpus. Before this,
-- PGlite ranked with pg_textsearch (statistics over the whole index, so one
-- org's writes moved another org's scores, which also told it whether other
-- tenants used a word) and PostgreSQL without the extension fell back to
-- ts_rank_cd (no IDF, no length normalisation: LoCoMo hit@10 0.530 vs 0.668).
--
-- Mechanism, chosen by measurement (docs/search.md): per-org term statistics
-- kept in the write transaction by statement-level triggers, so a batch
-- insert updates each term once. BM25 is computed in SQL over the candidates
-- the stored tsvector's GIN index finds; the document length is the number of
-- distinct lexemes (`length(search_tsv)`), which ranked the same as the token
-- count on LoCoMo and needs no new column. Term rows are updated in term
-- order, so two writers cannot deadlock on them; rows that fall to zero are
-- deleted, so the tables always equal a recount (down + up keeps checksums).
-- Writers of one org queue briefly on its corpus row and common terms' rows
-- (held until commit); measured in bench:load.
--
-- The neighbour index serves "the previous and next memory of the same
-- scope" (conversation context around a hit, see docs/search.md).
-- The pg_textsearch index on memories is no longer read and is dropped.

-- migrate:up
CREATE TABLE memory_term_stats (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  term text NOT NULL,
  df integer NOT NULL,
  PRIMARY KEY (org_id, term)
);

CREATE TABLE memory_corpus_stats (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  docs bigint NOT NULL,
  lexemes bigint NOT NULL,
  PRIMARY KEY (org_id)
);
CREATE INDEX memory_term_stats_zero ON memory_term_stats (org_id) WHERE df <= 0;

ALTER TABLE memory_term_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_term_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_term_stats TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memory_term_stats TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE memory_corpus_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_corpus_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_corpus_stats TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memory_corpus_stats TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON memory_term_stats, memory_corpus_stats TO engram_app, engram_system;

-- The three triggers add (+1) or remove (-1) the documents of their transition tables.
CREATE FUNCTION engram_memory_stats_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO memory_term_stats AS s (org_id, term, df)
    SELECT d.org_id, t.term, sum(d.sign)::integer
    FROM (SELECT org_id, search_tsv, 1 AS sign FROM memory_stats_new) d, unnest(tsvector_to_array(d.search_tsv)) AS t (term)
    GROUP BY d.org_id, t.term HAVING sum(d.sign) <> 0
    ORDER BY d.org_id, t.term
    ON CONFLICT (org_id, term) DO UPDATE SET df = s.df + excluded.df;
  INSERT INTO memory_corpus_stats AS s (org_id, docs, lexemes)
    SELECT d.org_id, sum(d.sign), sum(d.sign * length(d.search_tsv))
    FROM (SELECT org_id, search_tsv, 1 AS sign FROM memory_stats_new) d
    GROUP BY d.org_id HAVING sum(d.sign) <> 0 OR sum(d.sign * length(d.search_tsv)) <> 0
    ORDER BY d.org_id
    ON CONFLICT (org_id) DO UPDATE SET docs = s.docs + excluded.docs, lexemes = s.lexemes + excluded.lexemes;
  RETURN NULL;
END $$;

-- A delete cascaded from its org skips the statistics (they cascade away too).
CREATE FUNCTION engram_memory_stats_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO memory_term_stats AS s (org_id, term, df)
    SELECT d.org_id, t.term, sum(d.sign)::integer
    FROM (SELECT org_id, search_tsv, -1 AS sign FROM memory_stats_old) d, unnest(tsvector_to_array(d.search_tsv)) AS t (term)
    WHERE EXISTS (SELECT 1 FROM orgs o WHERE o.id = d.org_id)
    GROUP BY d.org_id, t.term HAVING sum(d.sign) <> 0
    ORDER BY d.org_id, t.term
    ON CONFLICT (org_id, term) DO UPDATE SET df = s.df + excluded.df;
  INSERT INTO memory_corpus_stats AS s (org_id, docs, lexemes)
    SELECT d.org_id, sum(d.sign), sum(d.sign * length(d.search_tsv))
    FROM (SELECT org_id, search_tsv, -1 AS sign FROM memory_stats_old) d
    WHERE EXISTS (SELECT 1 FROM orgs o WHERE o.id = d.org_id)
    GROUP BY d.org_id HAVING sum(d.sign) <> 0 OR sum(d.sign * length(d.search_tsv)) <> 0
    ORDER BY d.org_id
    ON CONFLICT (org_id) DO UPDATE SET docs = s.docs + excluded.docs, lexemes = s.lexemes + excluded.lexemes;
  DELETE FROM memory_term_stats WHERE df <= 0;
  DELETE FROM memory_corpus_stats WHERE docs <= 0;
  RETURN NULL;
END $$;

-- Only rows whose content changed move the statistics.
CREATE FUNCTION engram_memory_stats_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO memory_term_stats AS s (org_id, term, df)
    SELECT d.org_id, t.term, sum(d.sign)::integer
    FROM (SELECT o.org_id, o.search_tsv, -1 AS sign FROM memory_stats_old o JOIN memory_stats_new n
          ON n.org_id = o.org_id AND n.id = o.id WHERE n.content_hash <> o.content_hash
      UNION ALL SELECT n.org_id, n.search_tsv, 1 FROM memory_stats_new n JOIN memory_stats_old o
          ON n.org_id = o.org_id AND n.id = o.id WHERE n.content_hash <> o.content_hash) d, unnest(tsvector_to_array(d.search_tsv)) AS t (term)
    GROUP BY d.org_id, t.term HAVING sum(d.sign) <> 0
    ORDER BY d.org_id, t.term
    ON CONFLICT (org_id, term) DO UPDATE SET df = s.df + excluded.df;
  INSERT INTO memory_corpus_stats AS s (org_id, docs, lexemes)
    SELECT d.org_id, sum(d.sign), sum(d.sign * length(d.search_tsv))
    FROM (SELECT o.org_id, o.search_tsv, -1 AS sign FROM memory_stats_old o JOIN memory_stats_new n
          ON n.org_id = o.org_id AND n.id = o.id WHERE n.content_hash <> o.content_hash
      UNION ALL SELECT n.org_id, n.search_tsv, 1 FROM memory_stats_new n JOIN memory_stats_old o
          ON n.org_id = o.org_id AND n.id = o.id WHERE n.content_hash <> o.content_hash) d
    GROUP BY d.org_id HAVING sum(d.sign) <> 0 OR sum(d.sign * length(d.search_tsv)) <> 0
    ORDER BY d.org_id
    ON CONFLICT (org_id) DO UPDATE SET docs = s.docs + excluded.docs, lexemes = s.lexemes + excluded.lexemes;
  DELETE FROM memory_term_stats WHERE df <= 0;
  DELETE FROM memory_corpus_stats WHERE docs <= 0;
  RETURN NULL;
END $$;

CREATE TRIGGER memories_stats_insert AFTER INSERT ON memories
  REFERENCING NEW TABLE AS memory_stats_new FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_stats_insert();
CREATE TRIGGER memories_stats_delete AFTER DELETE ON memories
  REFERENCING OLD TABLE AS memory_stats_old FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_stats_delete();
CREATE TRIGGER memories_stats_update AFTER UPDATE ON memories
  REFERENCING OLD TABLE AS memory_stats_old NEW TABLE AS memory_stats_new
  FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_stats_update();

-- Statistics for the memories already stored (read as engram_system: RLS is forced).
SET LOCAL ROLE engram_system;
INSERT INTO memory_term_stats (org_id, term, df)
  SELECT org_id, term, count(*)::integer FROM memories, unnest(tsvector_to_array(search_tsv)) AS term
  GROUP BY org_id, term;
INSERT INTO memory_corpus_stats (org_id, docs, lexemes)
  SELECT org_id, count(*), coalesce(sum(length(search_tsv)), 0) FROM memories GROUP BY org_id;
RESET ROLE;

CREATE INDEX memories_scope_order ON memories (org_id, scope_key, id);
DROP INDEX IF EXISTS memories_bm25;

-- migrate:down
DROP INDEX IF EXISTS memories_scope_order;
DROP TRIGGER memories_stats_update ON memories;
DROP TRIGGER memories_stats_delete ON memories;
DROP TRIGGER memories_stats_insert ON memories;
DROP FUNCTION engram_memory_stats_update();
DROP FUNCTION engram_memory_stats_delete();
DROP FUNCTION engram_memory_stats_insert();
DROP TABLE memory_corpus_stats;
DROP TABLE memory_term_stats;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_textsearch') THEN
    CREATE INDEX memories_bm25 ON memories USING bm25 (content) WITH (text_config = 'english');
  END IF;
END $$;
