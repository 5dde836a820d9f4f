-- Why: code intelligence (issue 6) indexes an org's repositories into a code
-- graph kept in Postgres next to everything else: repositories, their files,
-- the symbols each file defines and the edges between files and symbols
-- (DEFINES, IMPORTS, CALLS, REFERENCES, EXTENDS, IMPLEMENTS, CONTAINS,
-- DEPENDS_ON), each edge with a confidence. Like every tenant table they carry
-- `org_id` in every key, with RLS enabled and FORCEd and the usual two
-- policies. Deleting a repo cascades to its files; deleting a file cascades to
-- its symbols and to every edge that originates in it (`file_id`), which is
-- what makes incremental re-indexing cheap: a changed file's rows are
-- replaced, edges *into* it are pointed back to "unresolved" (`dst_id` NULL,
-- name kept) and resolved again. `dst_id` names a file or a symbol
-- (`dst_kind`), so it has no foreign key. Symbols carry a SCIP-style id
-- (`scheme manager package version descriptors`) so links across repos can
-- later be joins on package and descriptor. Names are found by a btree on
-- lower(name) (exact and prefix; text_pattern_ops works in any collation):
-- pg_trgm is not loaded in the embedded store, so "contains" scans one org.
-- Two new scopes, `code:read` and `code:write`, are granted to admin-equivalent
-- keys (those holding `admin:keys`), as 0008 did for the ops scopes.

-- migrate:rewrites api_keys
-- migrate:up
CREATE TABLE code_repos (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  name text NOT NULL CHECK (name <> '' AND length(name) <= 200),
  source_kind text NOT NULL CHECK (source_kind IN ('path', 'url')),
  location text NOT NULL CHECK (location <> ''),
  default_branch text,
  package_manager text,
  package_name text,
  package_version text,
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'indexing', 'indexed', 'failed')),
  progress jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- The job that owns the next or current run; a run of any other job is stale and does nothing.
  index_job_id uuid,
  last_indexed_commit text,
  last_indexed_at timestamptz,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, location)
);

CREATE TABLE code_files (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  repo_id uuid NOT NULL,
  id uuid NOT NULL,
  path text NOT NULL CHECK (path <> ''),
  language text NOT NULL,
  content_hash text NOT NULL,
  size integer NOT NULL CHECK (size >= 0),
  indexed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, repo_id, path),
  FOREIGN KEY (org_id, repo_id) REFERENCES code_repos (org_id, id) ON DELETE CASCADE
);

CREATE TABLE code_symbols (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  repo_id uuid NOT NULL,
  file_id uuid NOT NULL,
  id uuid NOT NULL,
  parent_id uuid,
  scip_symbol text NOT NULL,
  descriptor text NOT NULL,
  kind text NOT NULL,
  name text NOT NULL CHECK (name <> ''),
  qualified_name text NOT NULL,
  start_line integer NOT NULL,
  start_col integer NOT NULL,
  end_line integer NOT NULL,
  end_col integer NOT NULL,
  name_line integer NOT NULL,
  name_col integer NOT NULL,
  signature text NOT NULL DEFAULT '',
  doc text,
  language text NOT NULL,
  exported boolean NOT NULL DEFAULT false,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, file_id) REFERENCES code_files (org_id, id) ON DELETE CASCADE
);
CREATE INDEX code_symbols_lower_name ON code_symbols (org_id, lower(name) text_pattern_ops);
CREATE INDEX code_symbols_qualified_name ON code_symbols (org_id, qualified_name);
CREATE INDEX code_symbols_scip ON code_symbols (org_id, scip_symbol);
CREATE INDEX code_symbols_file ON code_symbols (org_id, file_id);
CREATE INDEX code_symbols_repo_name ON code_symbols (org_id, repo_id, name);

CREATE TABLE code_edges (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  repo_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  -- The file the edge comes from: re-indexing or deleting it replaces its edges.
  file_id uuid NOT NULL,
  kind text NOT NULL
    CHECK (kind IN ('DEFINES', 'IMPORTS', 'CALLS', 'REFERENCES', 'EXTENDS', 'IMPLEMENTS', 'CONTAINS', 'DEPENDS_ON')),
  src_kind text NOT NULL CHECK (src_kind IN ('file', 'symbol')),
  src_id uuid NOT NULL,
  dst_kind text CHECK (dst_kind IN ('file', 'symbol')),
  dst_id uuid,
  -- The target as written (symbol name, or an import's module specifier): kept while unresolved.
  dst_name text NOT NULL,
  -- The module a referenced name was imported from (external when hint_file_id is NULL).
  dst_module text,
  -- The file that import resolved to: where the name is looked up first.
  hint_file_id uuid,
  -- 0 while unresolved.
  confidence real NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
  start_line integer,
  start_col integer,
  end_line integer,
  end_col integer,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, file_id) REFERENCES code_files (org_id, id) ON DELETE CASCADE,
  CHECK ((dst_kind IS NULL) = (dst_id IS NULL))
);
CREATE INDEX code_edges_dst ON code_edges (org_id, dst_id) WHERE dst_id IS NOT NULL;
CREATE INDEX code_edges_src ON code_edges (org_id, src_id);
CREATE INDEX code_edges_file ON code_edges (org_id, file_id);
CREATE INDEX code_edges_unresolved ON code_edges (org_id, repo_id, dst_name) WHERE dst_id IS NULL;
CREATE INDEX code_edges_hint ON code_edges (org_id, hint_file_id) WHERE hint_file_id IS NOT NULL;

ALTER TABLE code_repos ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_repos FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_repos TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_repos TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE code_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_files TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_files TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE code_symbols ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_symbols FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_symbols TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_symbols TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE code_edges ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_edges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_edges TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_edges TO engram_system USING (true) WITH CHECK (true);

-- Identity columns need no grant on their sequences.
GRANT SELECT, INSERT, UPDATE, DELETE ON code_repos, code_files, code_symbols, code_edges TO engram_app, engram_system;

UPDATE api_keys SET scopes = scopes || ARRAY(
    SELECT s FROM unnest(ARRAY['code:read', 'code:write']) AS s WHERE NOT s = ANY (api_keys.scopes)
  )
  WHERE 'admin:keys' = ANY (scopes);

-- migrate:down
UPDATE api_keys SET scopes = array_remove(array_remove(scopes, 'code:read'), 'code:write')
  WHERE scopes && ARRAY['code:read', 'code:write'];
DROP TABLE code_edges;
DROP TABLE code_symbols;
DROP TABLE code_files;
DROP TABLE code_repos;
