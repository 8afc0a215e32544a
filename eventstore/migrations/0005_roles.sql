-- Separate database roles, each able to do one job (docs/auth.md, "Database
-- roles"). All are NOLOGIN groups: ledgerd logs in as a member of one or more.
--   ledger_writer     appends events and moves heads, only through the
--                     fenced path below; ledgers' status; snapshots.
--   ledger_projector  reads the log, writes the read models.
--   ledger_reader     reads the log and the read models.
--   ledger_keys       the API keys (adapters/apikeys).
--   ledger_app        the union of the four: a single login for a ledgerd
--                     that does everything (as before this migration, but
--                     no longer writing ledger_heads directly).
-- The tables' owner (the migrating user) is none of them. Roles are made only
-- where the migrating user may create roles; elsewhere a DBA makes them
-- before `ledgerd migrate`, which grants to the roles that exist.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ledger_writer', 'ledger_projector', 'ledger_reader', 'ledger_keys', 'ledger_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
           AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- made meanwhile by a migration of another database of the cluster
            END;
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        RETURN;
    END IF;
    FOREACH r IN ARRAY ARRAY['ledger_writer', 'ledger_projector', 'ledger_reader', 'ledger_keys'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) AND NOT pg_has_role('ledger_app', r, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO ledger_app', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL; -- granted meanwhile by another database's migration
                WHEN insufficient_privilege THEN
                    RAISE WARNING 'may not make ledger_app a member of %: a DBA must (GRANT % TO ledger_app)', r, r;
            END;
        END IF;
    END LOOP;
END
$$;

-- Who moved a head, from where: advance_head records it, and the triggers
-- below check that the events inserted in the same transaction fill exactly
-- that move.
ALTER TABLE ledger_heads
    ADD COLUMN from_position bigint,
    ADD COLUMN from_hash     bytea,
    ADD COLUMN moved_xid     xid8;

-- The functions below name their tables with the schema's name (%1$s),
-- never through search_path: a role may not put a temporary ledger_heads in
-- their way. The triggers, which run as the caller, set no search_path (a
-- SET on every call costs every append); advance_head, which runs as the
-- owner, resolves the rest in pg_catalog only.
DO $do$
BEGIN
    -- advance_head is the only way a role that does not own ledger_heads
    -- moves a head: forward, from the position its writer expects (the
    -- fencing condition: false when another writer moved it first). A
    -- first append (expected 0) makes the head row. The ledger's status is
    -- the caller's to check (Append reads it FOR SHARE just before): the
    -- writer's role may change it anyway.
    EXECUTE format($f$
CREATE FUNCTION %1$s.advance_head(p_ledger text, p_expected bigint, p_position bigint, p_hash bytea)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF p_expected < 0 OR p_position <= p_expected THEN
        RAISE EXCEPTION 'advance_head of %%: %% to %% does not move forward', p_ledger, p_expected, p_position
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_expected = 0 THEN
        INSERT INTO %1$s.ledger_heads (ledger, position, hash) VALUES (p_ledger, 0, decode(repeat('00', 32), 'hex'))
            ON CONFLICT (ledger) DO NOTHING;
    END IF;
    -- SET sees the row before the update: from_* keep where the head was.
    UPDATE %1$s.ledger_heads SET position = p_position, hash = p_hash, from_position = position, from_hash = hash,
        moved_xid = pg_current_xact_id()
        WHERE ledger = p_ledger AND position = p_expected;
    RETURN FOUND;
END;
$fn$$f$, quote_ident(current_schema()));

    -- Rows inserted into events fill exactly the moves of heads made by the
    -- same transaction: every ledger's rows are gapless (the primary key
    -- makes positions unique: as many rows as positions from the first to
    -- the last) from the move's start to the head, the first one's
    -- prev_hash is the old head's hash and the last one's hash the head's.
    -- So an insert cannot go past the head, leave a gap or fork the chain
    -- at the head. The links between the rows of one append, like each
    -- row's hash, are the auditor's to check (audit verify): checking them
    -- here would cost a sort of every batch. The owner's own inserts that
    -- no head move covers (repairs, tests) pass: the owner may disable
    -- these triggers anyway.
    --
    -- Both trigger functions fix their search_path, like advance_head: a
    -- writer that may create objects in some schema could otherwise put it
    -- before pg_catalog and shadow pg_current_xact_id or pg_has_role.
    --
    -- One aggregate over the statement's rows, then two primary-key reads
    -- per ledger: no plan cached for a batch of one turns slow on a batch
    -- of 65,536. Whether the caller owns the table is asked only of a
    -- statement that fails the check.
    EXECUTE format($f$
CREATE FUNCTION %1$s.events_follow_head() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    bad record;
BEGIN
    SELECT n.ledger, n.lo, n.hi, h.from_position, h.position AS head INTO bad
        FROM (SELECT ledger, count(*) AS c, min(position) AS lo, max(position) AS hi FROM new_rows GROUP BY ledger) n
        LEFT JOIN %1$s.ledger_heads h USING (ledger)
        LEFT JOIN %1$s.events f ON f.ledger = n.ledger AND f.position = n.lo
        LEFT JOIN %1$s.events l ON l.ledger = n.ledger AND l.position = n.hi
        WHERE h.moved_xid IS DISTINCT FROM pg_current_xact_id() OR n.lo <> h.from_position + 1
           OR n.hi <> h.position OR n.c <> n.hi - n.lo + 1
           OR f.prev_hash IS DISTINCT FROM h.from_hash OR l.hash IS DISTINCT FROM h.hash
        LIMIT 1;
    IF FOUND AND NOT (pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
                      AND NOT EXISTS (SELECT 1 FROM new_rows n JOIN %1$s.ledger_heads h USING (ledger)
                                      WHERE h.moved_xid = pg_current_xact_id())) THEN
        RAISE EXCEPTION 'events %%@%%..%% do not fill, chained, a move of its head in this transaction (from %% to %%)',
            bad.ledger, bad.lo, bad.hi, bad.from_position, bad.head USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$fn$$f$, quote_ident(current_schema()));

    -- At commit, a head moved by advance_head points at an event of the log
    -- with its hash: a move with no events (a head sent past the log) rolls
    -- back.
    EXECUTE format($f$
CREATE FUNCTION %1$s.ledger_heads_on_log() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.moved_xid = pg_current_xact_id()
       AND NOT EXISTS (SELECT 1 FROM %1$s.events WHERE ledger = NEW.ledger AND position = NEW.position AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'head of %% moved to %% with no such event in the log', NEW.ledger, NEW.position
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$fn$$f$, quote_ident(current_schema()));
END
$do$;

CREATE TRIGGER events_follow_head AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_follow_head();
CREATE CONSTRAINT TRIGGER ledger_heads_on_log AFTER UPDATE ON ledger_heads DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_heads_on_log();

REVOKE ALL ON FUNCTION advance_head(text, bigint, bigint, bytea) FROM PUBLIC;

DO $$
DECLARE
    t text;
BEGIN
    -- ledger_app holds nothing of its own any more: what it may do, it has
    -- as a member of the four. Where it is not (the roles could not be made
    -- or joined), it keeps its grants, and ledgerd keeps working.
    IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('ledger_app', 'ledger_writer', 'ledger_projector', 'ledger_reader', 'ledger_keys')) = 5
       AND pg_has_role('ledger_app', 'ledger_writer', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_projector', 'MEMBER')
       AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_keys', 'MEMBER') THEN
        FOREACH t IN ARRAY ARRAY['events', 'ledger_heads', 'ledgers', 'snapshots', 'schema_migrations'] LOOP
            EXECUTE format('REVOKE ALL ON %I FROM ledger_app', t);
        END LOOP;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        -- Even then its head moves only through the fence.
        REVOKE INSERT, UPDATE, DELETE ON ledger_heads FROM ledger_app;
        GRANT EXECUTE ON FUNCTION advance_head(text, bigint, bigint, bytea) TO ledger_app;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_writer') THEN
        GRANT SELECT, INSERT ON events TO ledger_writer;
        GRANT SELECT ON ledger_heads, schema_migrations TO ledger_writer;
        GRANT EXECUTE ON FUNCTION advance_head(text, bigint, bigint, bytea) TO ledger_writer;
        -- Never deleted: an archived ledger keeps its name and log.
        GRANT SELECT, INSERT, UPDATE ON ledgers TO ledger_writer;
        -- Snapshots are a cache of the log, not the record: they are replaced.
        GRANT SELECT, INSERT, DELETE ON snapshots TO ledger_writer;
    END IF;
    FOREACH t IN ARRAY ARRAY['ledger_projector', 'ledger_reader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = t) THEN
            EXECUTE format('GRANT SELECT ON events, ledger_heads, ledgers, schema_migrations TO %I', t);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_keys') THEN
        GRANT SELECT ON schema_migrations TO ledger_keys;
    END IF;
END
$$;
