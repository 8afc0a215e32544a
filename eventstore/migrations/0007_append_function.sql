-- One function appends: append_events inserts a batch of events and moves
-- the head over them, checking on its arguments what the triggers of
-- 0005/0006 checked on the rows after the fact. The writer's role no longer
-- inserts into events nor calls advance_head; it calls this, and no trigger
-- runs on an append. Why: at one event an append, the transition-table
-- trigger (~150 µs of PostgreSQL CPU), the deferred head check (~70 µs) and
-- advance_head (~80 µs) nearly doubled the backend's cost of a transfer
-- (docs/perf.md, "The fenced append").
--
-- What the database now guarantees to a caller that is not the owner, as
-- before: events are only ever added at the head, gapless, the first one
-- chained to the head's hash, the head moved to the last one's position and
-- hash, and only from the position the caller expects (the fence: false
-- when another writer moved it first). And, new: every event of the batch
-- chains to the one before it (an array comparison, not a sort). Each
-- event's own hash stays the auditor's to check (audit verify).
DO $do$
BEGIN
    -- SECURITY DEFINER: it runs as the owner of events and ledger_heads.
    -- Every table is named with the schema's name (%1$s) and search_path is
    -- pg_catalog and pg_temp only, so a caller cannot shadow a table,
    -- function or operator it uses.
    EXECUTE format($f$
CREATE FUNCTION %1$s.append_events(p_ledger text, p_expected bigint, p_types text[], p_versions smallint[],
    p_recorded timestamptz[], p_commands text[], p_payloads json[], p_prev bytea[], p_hashes bytea[])
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    n int := cardinality(p_hashes);
BEGIN
    IF p_expected IS NULL OR p_expected < 0 OR n IS NULL OR n = 0
       OR array_ndims(p_hashes) <> 1 OR array_lower(p_hashes, 1) <> 1
       OR cardinality(p_types) IS DISTINCT FROM n OR cardinality(p_versions) IS DISTINCT FROM n
       OR cardinality(p_recorded) IS DISTINCT FROM n OR cardinality(p_commands) IS DISTINCT FROM n
       OR cardinality(p_payloads) IS DISTINCT FROM n OR cardinality(p_prev) IS DISTINCT FROM n THEN
        RAISE EXCEPTION 'append_events of %%: %% events after %%, arrays of unequal or no length', p_ledger, n, p_expected
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Each event's prev_hash is the hash of the one before it: the slices
    -- compare element by element in one pass.
    IF n > 1 AND p_prev[2:n] IS DISTINCT FROM p_hashes[1:n-1] THEN
        RAISE EXCEPTION 'append_events of %%: the events after %% are not chained to each other', p_ledger, p_expected
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_expected = 0 THEN
        INSERT INTO %1$s.ledger_heads (ledger, position, hash) VALUES (p_ledger, 0, decode(repeat('00', 32), 'hex'))
            ON CONFLICT (ledger) DO NOTHING;
    END IF;
    UPDATE %1$s.ledger_heads SET position = p_expected + n, hash = p_hashes[n]
        WHERE ledger = p_ledger AND position = p_expected AND hash = p_prev[1];
    IF NOT FOUND THEN
        -- At the expected position but another hash: a fork of the chain,
        -- not a lost race.
        IF EXISTS (SELECT 1 FROM %1$s.ledger_heads WHERE ledger = p_ledger AND position = p_expected) THEN
            RAISE EXCEPTION 'append_events of %%: the first event is not chained to the head at %%', p_ledger, p_expected
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN false; -- fenced: another writer moved the head first
    END IF;
    INSERT INTO %1$s.events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
        SELECT p_ledger, p_expected + u.i, u.t, u.v, u.r, u.c, u.p, u.pv, u.h
        FROM unnest(p_types, p_versions, p_recorded, p_commands, p_payloads, p_prev, p_hashes)
            WITH ORDINALITY AS u(t, v, r, c, p, pv, h, i);
    RETURN true;
END;
$fn$$f$, quote_ident(current_schema()));
END
$do$;

REVOKE ALL ON FUNCTION append_events(text, bigint, text[], smallint[], timestamptz[], text[], json[], bytea[], bytea[]) FROM PUBLIC;

-- The old path goes: nobody but the owner inserts into events or moves a
-- head any more, so the triggers that checked such inserts have nothing to
-- check. The owner (migrations, repairs, tests) is unchecked, as before.
DROP TRIGGER events_follow_head ON events;
DROP TRIGGER ledger_heads_on_log ON ledger_heads;
DROP FUNCTION events_follow_head();
DROP FUNCTION ledger_heads_on_log();
DROP FUNCTION advance_head(text, bigint, bigint, bytea);
-- from_position, from_hash and moved_xid served only those checks.
ALTER TABLE ledger_heads DROP COLUMN from_position, DROP COLUMN from_hash, DROP COLUMN moved_xid;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_writer') THEN
        REVOKE INSERT ON events FROM ledger_writer;
        GRANT EXECUTE ON FUNCTION append_events(text, bigint, text[], smallint[], timestamptz[], text[], json[], bytea[], bytea[])
            TO ledger_writer;
    END IF;
    -- A ledger_app that could not be made a member of the four roles
    -- (0005) kept its own grants: it appends through the function too.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        REVOKE INSERT ON events FROM ledger_app;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_writer')
           OR NOT pg_has_role('ledger_app', 'ledger_writer', 'MEMBER') THEN
            GRANT EXECUTE ON FUNCTION append_events(text, bigint, text[], smallint[], timestamptz[], text[], json[], bytea[], bytea[])
                TO ledger_app;
        END IF;
    END IF;
END
$$;
