-- Why: indexing speed (issue 6). code_symbols and code_edges referenced
-- code_files with a foreign key, for one reason: deleting a file (directly,
-- or through its repository or its org) deleted its symbols and edges. Each
-- inserted row paid for it with a lookup of its file, locked FOR KEY SHARE:
-- 41k lookups for a 2,300-file repository, about a sixth of what the
-- embedded store spends inserting them. The cascade is now one statement-level
-- trigger on code_files that deletes the rows of every file the statement
-- deleted (its transition table), and it fires for cascaded deletes too
-- (repository, org). The indexer always writes a file's row before its
-- symbols and edges, in the same transaction, so nothing can point at a file
-- that is not there. The function runs as the caller, under the caller's RLS.

-- migrate:up
ALTER TABLE code_symbols DROP CONSTRAINT code_symbols_org_id_file_id_fkey;
ALTER TABLE code_edges DROP CONSTRAINT code_edges_org_id_file_id_fkey;

CREATE FUNCTION engram_code_files_deleted() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, public
  AS $$
BEGIN
  DELETE FROM public.code_symbols s USING gone g WHERE s.org_id = g.org_id AND s.file_id = g.id;
  DELETE FROM public.code_edges e USING gone g WHERE e.org_id = g.org_id AND e.file_id = g.id;
  RETURN NULL;
END $$;
CREATE TRIGGER code_files_deleted AFTER DELETE ON code_files
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION engram_code_files_deleted();

-- migrate:down
DROP TRIGGER code_files_deleted ON code_files;
DROP FUNCTION engram_code_files_deleted();
ALTER TABLE code_symbols ADD CONSTRAINT code_symbols_org_id_file_id_fkey FOREIGN KEY (org_id, file_id)
  REFERENCES code_files (org_id, id) ON DELETE CASCADE;
ALTER TABLE code_edges ADD CONSTRAINT code_edges_org_id_file_id_fkey FOREIGN KEY (org_id, file_id)
  REFERENCES code_files (org_id, id) ON DELETE CASCADE;
