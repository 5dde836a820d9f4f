-- Why: claiming was oldest-first across orgs, so one org that queued 50
-- index runs held every worker until they were done, while another org's
-- embed job waited behind them (issue 16, item 12). A claim now walks the
-- orgs that have queued jobs (a loose index scan: one probe per org), takes
-- each org's oldest due jobs, and hands the free slots out round-robin,
-- fewest running first. Both steps read this index: org first, then due
-- order. jobs_due (run_at, id) served only the old oldest-first claim and
-- is dropped, so an enqueue still writes one queue index.
--
-- Measured with EXPLAIN ANALYZE (60 orgs; 5,600 queued jobs, 5,000 of them
-- one org's; 20,000 finished; a claim of 2): the fair claim statement runs in
-- 0.8 ms on PostgreSQL 15 and 3 ms on PGlite with this index, 19 ms and
-- 40 ms without it (each org's jobs then came from filtering jobs_due); the
-- old oldest-first claim took about 1 ms on either. The cost grows with the
-- number of orgs that have queued jobs, not with the number of jobs.

-- migrate:up
CREATE INDEX jobs_queued_org ON jobs (org_id, run_at, id) WHERE state = 'queued';
DROP INDEX jobs_due;

-- migrate:down
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'queued';
DROP INDEX jobs_queued_org;
