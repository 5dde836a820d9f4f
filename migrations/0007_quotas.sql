-- Why: rate limits are per org and per route class (read, write, search,
-- admin). Defaults come from the configuration; an org that needs more (or
-- less) gets a row here. A NULL column means "use the default" for that
-- class, so an override can name just one class. Values are requests per
-- minute; the burst follows from the configured burst window. Quotas are
-- tenant data like any other: RLS enabled and FORCEd, with the same two
-- policies as the tenancy tables (0001).

-- migrate:up
CREATE TABLE org_quotas (
  org_id uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
  read_per_min integer CHECK (read_per_min > 0),
  write_per_min integer CHECK (write_per_min > 0),
  search_per_min integer CHECK (search_per_min > 0),
  admin_per_min integer CHECK (admin_per_min > 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE org_quotas ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_quotas FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON org_quotas TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON org_quotas TO engram_system USING (true) WITH CHECK (true);

-- An org may read its quotas; only system work (operators) changes them.
GRANT SELECT ON org_quotas TO engram_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON org_quotas TO engram_system;

-- migrate:down
DROP TABLE org_quotas;
