-- Why: bulk ingestion (issue 15) has a rate class of its own, `import`,
-- charged per memory rather than per request, so importing a chat history
-- (thousands of items a minute) neither hits the write limit meant for
-- single writes (600/min) nor lets a single write flood pass as an import.
-- The default comes from RATE_LIMIT_IMPORT_PER_MIN; an org that needs more
-- or less gets it here, like the other classes (0007). NULL: the default.

-- migrate:up
ALTER TABLE org_quotas ADD COLUMN import_per_min integer CHECK (import_per_min > 0);

-- migrate:down
ALTER TABLE org_quotas DROP COLUMN import_per_min;
