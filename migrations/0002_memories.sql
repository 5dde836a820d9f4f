-- Why: memories are Engram's core record. Each belongs to one org and to an
-- optional scope (user / agent / project / session ids, free-form strings that
-- agents choose). Exact duplicates in the same scope are stored once, enforced
-- by a unique key on (org, scope, content hash). Every update keeps the prior
-- version in memory_history. A stored tsvector + GIN makes full-text search
-- 8–11× faster than an expression index, because ranking re-parses otherwise.

-- migrate:up
CREATE TABLE memories (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  scope_user text,
  scope_agent text,
  scope_project text,
  scope_session text,
  -- Canonical form of the four scope fields, so dedupe works with NULLs.
  scope_key text NOT NULL,
  content text NOT NULL,
  content_hash text NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags text[] NOT NULL DEFAULT '{}',
  source text,
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  valid_from timestamptz,
  valid_to timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, scope_key, content_hash),
  CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from)
);
CREATE INDEX memories_search_tsv ON memories USING gin (search_tsv);
CREATE INDEX memories_tags ON memories USING gin (tags);
CREATE INDEX memories_metadata ON memories USING gin (metadata jsonb_path_ops);
CREATE INDEX memories_scope_user ON memories (org_id, scope_user) WHERE scope_user IS NOT NULL;
CREATE INDEX memories_scope_agent ON memories (org_id, scope_agent) WHERE scope_agent IS NOT NULL;
CREATE INDEX memories_scope_project ON memories (org_id, scope_project) WHERE scope_project IS NOT NULL;
CREATE INDEX memories_scope_session ON memories (org_id, scope_session) WHERE scope_session IS NOT NULL;
CREATE INDEX memories_created ON memories (org_id, created_at);

CREATE TABLE memory_history (
  org_id uuid NOT NULL,
  memory_id uuid NOT NULL,
  version integer NOT NULL,
  scope_user text,
  scope_agent text,
  scope_project text,
  scope_session text,
  content text NOT NULL,
  content_hash text NOT NULL,
  metadata jsonb NOT NULL,
  tags text[] NOT NULL,
  source text,
  valid_from timestamptz,
  valid_to timestamptz,
  -- When this version was current: from its write until it was superseded.
  written_at timestamptz NOT NULL,
  superseded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, memory_id, version),
  FOREIGN KEY (org_id, memory_id) REFERENCES memories (org_id, id) ON DELETE CASCADE
);

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memories TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memories TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE memory_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_history TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON memory_history TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON memories, memory_history TO engram_app, engram_system;

-- migrate:down
DROP TABLE memory_history;
DROP TABLE memories;
