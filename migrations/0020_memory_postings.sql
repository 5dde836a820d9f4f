-- Why: unscoped lexical search must stay fast as an org grows (issue 15:
-- p95 <= 15 ms at 100,000 memories). 0017 scores BM25 over the GIN index's
-- candidates, which means fetching and unnesting every candidate's tsvector
-- from the heap: 280 ms for a five-term query matching 28,000 of 100,000
-- memories (bench:search corpus, PostgreSQL 15). A postings table (one row
-- per memory and lexeme, with the term frequency and the memory's length)
-- answers the same query from one index-only scan per term and a hash
-- aggregate: 19 ms. Measured alternatives, kept out: ts_filter() to unnest
-- only the query's lexemes (137 ms: the heap fetch remains), and a lower
-- candidate cap (changes the ranking to save time).
--
-- Cost, measured at 100,000 memories: 2.5 M postings, 182 MB of heap and
-- 284 MB of index (memories itself: 157 MB). Searches inside one user's,
-- agent's, project's or session's scope keep reading the scope's own rows
-- (already fast: the scope index bounds the candidates), so the postings
-- serve only searches without a memory filter.
--
-- The statement-level triggers of 0017 keep the statistics; these keep the
-- postings, in the same transaction. No foreign key (a check per posting
-- would cost more than the posting): the delete trigger removes a memory's
-- postings, including when its org's deletion cascades to it.

-- migrate:up
CREATE TABLE memory_postings (
  org_id uuid NOT NULL,
  term text NOT NULL,
  memory_id uuid NOT NULL,
  tf integer NOT NULL,
  doc_len integer NOT NULL,
  PRIMARY KEY (org_id, term, memory_id) INCLUDE (tf, doc_len)
);

ALTER TABLE memory_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_postings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_postings TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memory_postings TO engram_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON memory_postings TO engram_app, engram_system;

CREATE FUNCTION engram_memory_postings_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO memory_postings (org_id, term, memory_id, tf, doc_len)
    SELECT n.org_id, u.lexeme, n.id, cardinality(u.positions), length(n.search_tsv)
    FROM memory_postings_new n, unnest(n.search_tsv) AS u;
  RETURN NULL;
END $$;

CREATE FUNCTION engram_memory_postings_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM memory_postings p
    USING (SELECT o.org_id, o.id, unnest(tsvector_to_array(o.search_tsv)) AS term FROM memory_postings_old o) d
    WHERE p.org_id = d.org_id AND p.term = d.term AND p.memory_id = d.id;
  RETURN NULL;
END $$;

-- Only rows whose content changed move their postings.
CREATE FUNCTION engram_memory_postings_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM memory_postings p
    USING (SELECT o.org_id, o.id, unnest(tsvector_to_array(o.search_tsv)) AS term
           FROM memory_postings_old o JOIN memory_postings_new n ON n.org_id = o.org_id AND n.id = o.id
           WHERE n.content_hash <> o.content_hash) d
    WHERE p.org_id = d.org_id AND p.term = d.term AND p.memory_id = d.id;
  INSERT INTO memory_postings (org_id, term, memory_id, tf, doc_len)
    SELECT n.org_id, u.lexeme, n.id, cardinality(u.positions), length(n.search_tsv)
    FROM memory_postings_new n JOIN memory_postings_old o ON n.org_id = o.org_id AND n.id = o.id,
      unnest(n.search_tsv) AS u
    WHERE n.content_hash <> o.content_hash;
  RETURN NULL;
END $$;

CREATE TRIGGER memories_postings_insert AFTER INSERT ON memories
  REFERENCING NEW TABLE AS memory_postings_new FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_postings_insert();
CREATE TRIGGER memories_postings_delete AFTER DELETE ON memories
  REFERENCING OLD TABLE AS memory_postings_old FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_postings_delete();
CREATE TRIGGER memories_postings_update AFTER UPDATE ON memories
  REFERENCING OLD TABLE AS memory_postings_old NEW TABLE AS memory_postings_new
  FOR EACH STATEMENT EXECUTE FUNCTION engram_memory_postings_update();

-- Postings for the memories already stored (read as engram_system: RLS is forced).
SET LOCAL ROLE engram_system;
INSERT INTO memory_postings (org_id, term, memory_id, tf, doc_len)
  SELECT m.org_id, u.lexeme, m.id, cardinality(u.positions), length(m.search_tsv)
  FROM memories m, unnest(m.search_tsv) AS u;
RESET ROLE;

-- migrate:down
DROP TRIGGER memories_postings_update ON memories;
DROP TRIGGER memories_postings_delete ON memories;
DROP TRIGGER memories_postings_insert ON memories;
DROP FUNCTION engram_memory_postings_update();
DROP FUNCTION engram_memory_postings_delete();
DROP FUNCTION engram_memory_postings_insert();
DROP TABLE memory_postings;
