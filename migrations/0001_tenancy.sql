-- Why: Engram is multi-tenant from the first row. Orgs are the tenants; users,
-- projects and API keys belong to one org. Isolation is enforced by Postgres
-- Row-Level Security, not only by application code: every tenant table has
-- RLS enabled and FORCEd, the app runs as the non-owner role `engram_app`, and
-- each transaction names its org with set_config('app.current_org_id', …, true).
-- A query without that setting sees nothing. `org_id` leads every key so the
-- tables can later be distributed by org (Citus).
-- System work (bootstrap, key lookup, background jobs across orgs) runs as
-- members of `engram_system`, which has its own permissive policy.

-- migrate:up
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'engram_app') THEN
    CREATE ROLE engram_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'engram_system') THEN
    CREATE ROLE engram_system NOLOGIN;
  END IF;
END $$;

-- The migrating user must be able to SET ROLE engram_app and act as system.
-- Superusers need no grant; managed databases may refuse it, which is fine
-- when the app connects directly as a member of engram_app.
DO $$
BEGIN
  EXECUTE format('GRANT engram_app TO %I', current_user);
  EXECUTE format('GRANT engram_system TO %I', current_user);
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'could not grant engram roles to %: %', current_user, SQLERRM;
END $$;

CREATE FUNCTION engram_current_org() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$ SELECT nullif(current_setting('app.current_org_id', true), '')::uuid $$;

CREATE TABLE orgs (
  id uuid PRIMARY KEY,
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  email text NOT NULL,
  display_name text,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member', 'reader', 'service')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, email)
);

CREATE TABLE projects (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  slug text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, slug)
);

CREATE TABLE api_keys (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  name text NOT NULL,
  -- Public lookup handle (first part of the key); the secret is stored hashed.
  prefix text NOT NULL UNIQUE,
  secret_hash text NOT NULL,
  scopes text[] NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  PRIMARY KEY (org_id, id)
);

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON orgs TO engram_app
  USING (id = engram_current_org()) WITH CHECK (id = engram_current_org());
CREATE POLICY system_access ON orgs TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON users TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON projects TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON projects TO engram_system USING (true) WITH CHECK (true);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON api_keys TO engram_system USING (true) WITH CHECK (true);

-- Authentication happens before the org is known: this definer function is the
-- one narrow door from a key prefix to its org, for the app role only.
CREATE FUNCTION engram_find_api_key(p_prefix text)
  RETURNS TABLE (org_id uuid, id uuid, secret_hash text, scopes text[], expires_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, public
  AS $$ SELECT k.org_id, k.id, k.secret_hash, k.scopes, k.expires_at, k.revoked_at
        FROM public.api_keys k WHERE k.prefix = p_prefix $$;
REVOKE ALL ON FUNCTION engram_find_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION engram_find_api_key(text) TO engram_app;
GRANT EXECUTE ON FUNCTION engram_current_org() TO engram_app;

GRANT SELECT ON orgs TO engram_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, projects, api_keys TO engram_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON orgs, users, projects, api_keys TO engram_system;

-- migrate:down
DROP FUNCTION engram_find_api_key(text);
DROP TABLE api_keys;
DROP TABLE projects;
DROP TABLE users;
DROP TABLE orgs;
DROP FUNCTION engram_current_org();
-- Roles are cluster-wide and may serve other databases: they are left in place.
