-- Why: indexing speed (issue 6). code_symbols and code_edges each had a
-- foreign key to orgs besides the one to code_files. The second one was
-- redundant — a symbol or an edge belongs to a file, the file to a repo and
-- the repo to the org, and deleting an org cascades down that chain — but it
-- cost a lookup in orgs for every inserted row: 41k lookups for a
-- 2,300-file repository, about 15 % of the time PostgreSQL spends
-- inserting them. The foreign keys to code_files stay.

-- migrate:up
ALTER TABLE code_symbols DROP CONSTRAINT code_symbols_org_id_fkey;
ALTER TABLE code_edges DROP CONSTRAINT code_edges_org_id_fkey;

-- migrate:down
ALTER TABLE code_symbols ADD CONSTRAINT code_symbols_org_id_fkey FOREIGN KEY (org_id) REFERENCES orgs (id)
  ON DELETE CASCADE;
ALTER TABLE code_edges ADD CONSTRAINT code_edges_org_id_fkey FOREIGN KEY (org_id) REFERENCES orgs (id)
  ON DELETE CASCADE;
