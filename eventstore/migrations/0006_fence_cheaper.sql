-- The check that inserted events fill exactly their head's move, without
-- the four-way join over the transition table: a query that reads an
-- ephemeral relation is planned anew at every call, and that join's
-- planning was most of the ~300 µs of PostgreSQL CPU the check added to an
-- append (BENCHMARKS.md, "Cost of the integrity work"). Now the only query
-- over the transition table is one small aggregate; the head and the two
-- end events are read by primary key in statements whose plans are cached
-- for the session. What is checked is unchanged (0005_roles.sql).
DO $do$
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION %1$s.events_follow_head() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    n record;
    h record;
    ok boolean;
BEGIN
    FOR n IN SELECT ledger, count(*) AS c, min(position) AS lo, max(position) AS hi FROM new_rows GROUP BY ledger LOOP
        SELECT position, hash, from_position, from_hash, moved_xid INTO h FROM %1$s.ledger_heads WHERE ledger = n.ledger;
        -- coalesce: a NULL anywhere (a head never moved) is a refusal.
        ok := FOUND AND coalesce(h.moved_xid = pg_current_xact_id() AND n.lo = h.from_position + 1 AND n.hi = h.position
            AND n.c = n.hi - n.lo + 1
            AND EXISTS (SELECT 1 FROM %1$s.events WHERE ledger = n.ledger AND position = n.lo AND prev_hash = h.from_hash)
            AND EXISTS (SELECT 1 FROM %1$s.events WHERE ledger = n.ledger AND position = n.hi AND hash = h.hash), false);
        -- The owner's own inserts that no head move covers (repairs, tests)
        -- pass, as before.
        IF NOT ok AND NOT (pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
                           AND (h IS NULL OR h.moved_xid IS DISTINCT FROM pg_current_xact_id())) THEN
            RAISE EXCEPTION 'events %%@%%..%% do not fill, chained, a move of its head in this transaction (from %% to %%)',
                n.ledger, n.lo, n.hi, h.from_position, h.position USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$fn$$f$, quote_ident(current_schema()));
END
$do$;
