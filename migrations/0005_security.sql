-- Why: security enforcement needs three things in the schema.
-- 1. Residency: every org has a home region; an instance serves only orgs of
--    the regions it is configured for. Existing orgs take the region of the
--    instance that applies this migration (the migrator passes it in
--    `engram.region`), so an upgrade never locks an org out of its own server.
-- 2. An append-only audit log, hash-chained per org: each entry stores the hash
--    of the previous one, and `audit_heads` keeps the latest (seq, hash) of each
--    chain, so an edited, deleted or truncated entry breaks verification
--    (`engram audit verify`). Events whose org is unknown (a bad credential)
--    go to the system chain, chain_id = the nil UUID, org_id NULL, visible
--    only to engram_system. The app role may only INSERT and SELECT; triggers
--    refuse UPDATE, DELETE and TRUNCATE for everyone.
-- 3. Scope names follow `<resource>:<verb>` with admin scopes as `admin:<what>`:
--    keys:admin becomes admin:keys, and keys that could administer keys (the
--    admin-equivalent ones) also get the new audit:read.

-- migrate:rewrites orgs, api_keys
-- migrate:up
ALTER TABLE orgs ADD COLUMN region text;
UPDATE orgs SET region = coalesce(nullif(current_setting('engram.region', true), ''), 'local');
ALTER TABLE orgs ALTER COLUMN region SET NOT NULL;
ALTER TABLE orgs ALTER COLUMN region SET DEFAULT 'local';
ALTER TABLE orgs ADD CONSTRAINT orgs_region_check CHECK (region ~ '^[a-z0-9][a-z0-9-]{0,62}$');

UPDATE api_keys SET scopes = array_append(array_replace(scopes, 'keys:admin', 'admin:keys'), 'audit:read')
  WHERE 'keys:admin' = ANY (scopes);

CREATE TABLE audit_log (
  chain_id uuid NOT NULL,
  seq bigint NOT NULL CHECK (seq > 0),
  org_id uuid,
  id uuid NOT NULL UNIQUE,
  at timestamptz NOT NULL,
  actor_type text NOT NULL,
  actor_id text,
  auth_method text,
  action text NOT NULL,
  resource_type text,
  resource_id text,
  outcome text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure', 'error')),
  status integer,
  ip text,
  user_agent text,
  request_id text,
  details jsonb NOT NULL DEFAULT '{}',
  prev_hash text NOT NULL,
  hash text NOT NULL,
  PRIMARY KEY (chain_id, seq),
  CHECK ((org_id IS NULL AND chain_id = '00000000-0000-0000-0000-000000000000') OR chain_id = org_id)
);
CREATE INDEX audit_log_org_at ON audit_log (org_id, at);

CREATE TABLE audit_heads (
  chain_id uuid PRIMARY KEY,
  org_id uuid,
  seq bigint NOT NULL,
  hash text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((org_id IS NULL AND chain_id = '00000000-0000-0000-0000-000000000000') OR chain_id = org_id)
);

CREATE FUNCTION engram_audit_append_only() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION engram_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION engram_audit_append_only();

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON audit_log TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_heads TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON audit_heads TO engram_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT ON audit_log TO engram_app, engram_system;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO engram_app, engram_system;

-- migrate:down
DROP TABLE audit_heads;
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_no_update ON audit_log;
DROP TABLE audit_log;
DROP FUNCTION engram_audit_append_only();
UPDATE api_keys SET scopes = array_replace(array_remove(scopes, 'audit:read'), 'admin:keys', 'keys:admin')
  WHERE 'admin:keys' = ANY (scopes);
ALTER TABLE orgs DROP COLUMN region;
