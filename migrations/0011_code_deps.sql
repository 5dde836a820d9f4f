-- Why: cross-repository links (issue 6). Each repository's manifests
-- (package.json and its workspaces, go.mod, Cargo.toml, pyproject.toml,
-- requirements.txt) say which packages it *provides* (its published identity:
-- manager + name, with the version and the source file its entry point maps
-- to) and which it *depends on* (manager + name, the declared version range
-- and the kind: runtime, dev, peer, optional). A DEPENDS_ON edge is the join
-- of one repo's `depends` row with another repo's `provides` row in the same
-- org on manager + name, so it is current as soon as either repo is
-- (re)indexed or removed, and nothing needs re-resolving. The rows are
-- replaced whole at every run; deleting a repo cascades to them. Like every
-- tenant table, `org_id` is in every key, with RLS enabled and FORCEd.

-- migrate:up
CREATE TABLE code_packages (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  repo_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  role text NOT NULL CHECK (role IN ('provides', 'depends')),
  manager text NOT NULL CHECK (manager <> ''),
  name text NOT NULL CHECK (name <> ''),
  -- `provides`: the package's version; `depends`: the declared range, as written.
  version text NOT NULL DEFAULT '.',
  -- `depends`: runtime, dev, peer or optional.
  dep_kind text CHECK (dep_kind IN ('runtime', 'dev', 'peer', 'optional')),
  -- The directory of the manifest in the repo ('' for the root; workspaces have their own).
  dir text NOT NULL DEFAULT '',
  -- `provides`: the repository file the package's entry point (exports/types/module/main) maps to.
  entry_path text,
  PRIMARY KEY (org_id, id),
  FOREIGN KEY (org_id, repo_id) REFERENCES code_repos (org_id, id) ON DELETE CASCADE
);
CREATE INDEX code_packages_name ON code_packages (org_id, manager, name);
CREATE INDEX code_packages_repo ON code_packages (org_id, repo_id);

ALTER TABLE code_packages ENABLE ROW LEVEL SECURITY;
ALTER TABLE code_packages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON code_packages TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON code_packages TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON code_packages TO engram_app, engram_system;

-- migrate:down
DROP TABLE code_packages;
