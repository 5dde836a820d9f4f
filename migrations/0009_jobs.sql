-- Why: slow work (embedding first) must survive a crash, an embedder outage
-- and a restart, so it runs through a durable queue in the system of record
-- instead of in memory. A job belongs to one org and is tenant data like any
-- other: RLS enabled and FORCEd, the same two policies as every tenant table.
-- The app role enqueues jobs in the same transaction as the write that needs
-- them (a memory is never stored without its embed job) and lists and
-- re-drives its own org's jobs; workers claim due jobs across orgs as
-- engram_system with FOR UPDATE SKIP LOCKED, hold them under a lease
-- (locked_until) and run each job's work inside its org's transaction.
-- States: queued → running → succeeded, or back to queued with a later run_at
-- after a failure (exponential backoff), or dead after max_attempts; a dead job
-- stays until an operator re-drives it. A running job whose lease expired (its
-- worker crashed) is reclaimed. Succeeded jobs are pruned after a retention
-- period. The partial indexes keep claiming, reclaiming and pruning cheap
-- however many finished jobs are kept.

-- migrate:up
CREATE TABLE jobs (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'dead')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL CHECK (max_attempts >= 1),
  run_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz,
  locked_by text,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (org_id, id),
  CHECK ((state = 'running') = (locked_until IS NOT NULL AND locked_by IS NOT NULL)),
  CHECK ((state IN ('succeeded', 'dead')) = (finished_at IS NOT NULL))
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'succeeded';
CREATE INDEX jobs_org_state ON jobs (org_id, state, id);

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs TO engram_app
  USING (org_id = engram_current_org()) WITH CHECK (org_id = engram_current_org());
CREATE POLICY system_access ON jobs TO engram_system USING (true) WITH CHECK (true);

-- An org enqueues, lists and re-drives its jobs; only workers (system) delete them.
GRANT SELECT, INSERT, UPDATE ON jobs TO engram_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO engram_system;

-- migrate:down
DROP TABLE jobs;
