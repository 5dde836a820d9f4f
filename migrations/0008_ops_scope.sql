-- Why: operability adds three scopes: `ops:read` (GET /metrics,
-- /health/deps/detail), `jobs:read` and `jobs:write` (list and re-drive
-- background jobs). New admin keys get them from their role; keys created
-- before they existed would silently lose sight of metrics and dead jobs.
-- Keys that can administer keys (the admin-equivalent ones, as in 0005) gain
-- them, so an upgrade leaves an operator's admin key able to run the instance.

-- migrate:rewrites api_keys
-- migrate:up
UPDATE api_keys SET scopes = scopes || ARRAY(
    SELECT s FROM unnest(ARRAY['ops:read', 'jobs:read', 'jobs:write']) AS s WHERE NOT s = ANY (api_keys.scopes)
  )
  WHERE 'admin:keys' = ANY (scopes);

-- migrate:down
UPDATE api_keys SET scopes = array_remove(array_remove(array_remove(scopes, 'ops:read'), 'jobs:read'), 'jobs:write')
  WHERE scopes && ARRAY['ops:read', 'jobs:read', 'jobs:write'];
