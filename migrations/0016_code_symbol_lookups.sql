-- Why: indexing speed (issue 6). code_symbols had two btrees that served one
-- lookup each: by qualified name and by SCIP id (`symbol=` given as one).
-- Every inserted symbol paid for both, and the SCIP id index, of keys about
-- 100 bytes long, was half the size of all the table's indexes. Both
-- lookups now go through the index on lower(name), which every symbol needs
-- anyway: a qualified name ends with the symbol's name (after a dot, and a
-- name may itself hold dots, as `namespace A.B` does), and a SCIP id's last
-- descriptor is the name, escaped. The query narrows by name, then compares
-- the whole qualified name or id.

-- migrate:up
DROP INDEX code_symbols_qualified_name;
DROP INDEX code_symbols_scip;

-- migrate:down
CREATE INDEX code_symbols_qualified_name ON code_symbols (org_id, qualified_name);
CREATE INDEX code_symbols_scip ON code_symbols (org_id, scip_symbol);
