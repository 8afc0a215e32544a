-- Statement lines keyed by numbers (docs/perf.md, session 16). A line's
-- primary key was (ledger, account, position, seq) with two text columns:
-- most of what a line cost PostgreSQL was placing that key in its index,
-- and a text key costs about twice an integer one
-- (scripts/perf/copy-rows.sql). The lines are now keyed by
--
--   ledger_no   the number movement_ledgers gives the ledger key (a ledger,
--               or a rebuild's shadow of it), and
--   account_no  the account's opening position (movement_heads.opened_position):
--               unique in its ledger, fixed for the account's life, and the
--               same in every build of the read model.
--
-- A query finds an account's lines through its head, which carries both.
-- A rebuild's swap renames the shadow's movement_ledgers row and heads to
-- the ledger and deletes the old lines: the rebuilt lines are never rewritten
-- (projections/rebuild.go).
--
-- The migration rewrites every line once, holding movement_heads locked
-- throughout: statement, balance and account queries and the movements and
-- reconciliation projections wait for it (docs/operations.md). An older
-- ledgerd's movements projector fails every batch that writes a line or a
-- head against the new tables, and its queries of the lines fail, until it
-- is upgraded.
-- Locked first, and for the whole migration: a batch an older ledgerd
-- commits while the lines are copied would otherwise be dropped with the
-- old table, its checkpoint moved past it.
LOCK TABLE movements, movement_heads IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE movement_ledger_no AS integer;

CREATE TABLE movement_ledgers (
    ledger    text COLLATE "C" PRIMARY KEY,
    ledger_no integer NOT NULL UNIQUE DEFAULT nextval('movement_ledger_no')
);
ALTER SEQUENCE movement_ledger_no OWNED BY movement_ledgers.ledger_no;

INSERT INTO movement_ledgers (ledger) SELECT DISTINCT ledger FROM movement_heads ORDER BY ledger;

ALTER TABLE movement_heads ADD COLUMN ledger_no integer;
UPDATE movement_heads h SET ledger_no = l.ledger_no FROM movement_ledgers l WHERE l.ledger = h.ledger;
ALTER TABLE movement_heads ALTER COLUMN ledger_no SET NOT NULL;
-- The lines' key relies on it: one account opened at a position.
CREATE UNIQUE INDEX movement_heads_numbers ON movement_heads (ledger_no, opened_position);

-- Columns as in 0002_movements.sql (and 0018's collation), but for the key.
CREATE TABLE movement_lines_numbered (
    ledger_no        integer     NOT NULL,
    account_no       bigint      NOT NULL,
    position         bigint      NOT NULL,
    seq              smallint    NOT NULL,
    posting_index    int         NOT NULL,
    side             text        NOT NULL CONSTRAINT movements_side_check CHECK (side IN ('debit', 'credit')),
    pending          boolean     NOT NULL,
    kind             text        NOT NULL,
    transfer_id      text        NOT NULL,
    counter_accounts text[] COLLATE "C" NOT NULL,
    amount           numeric     NOT NULL,
    debits_posted    numeric     NOT NULL,
    credits_posted   numeric     NOT NULL,
    debits_pending   numeric     NOT NULL,
    credits_pending  numeric     NOT NULL,
    effective_at     timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    reference        text,
    metadata         jsonb
);

DO $$
DECLARE
    before bigint;
    after  bigint;
BEGIN
    SELECT count(*) INTO before FROM movements;
    INSERT INTO movement_lines_numbered
    SELECT h.ledger_no, h.opened_position, m.position, m.seq, m.posting_index, m.side, m.pending, m.kind,
        m.transfer_id, m.counter_accounts, m.amount, m.debits_posted, m.credits_posted, m.debits_pending,
        m.credits_pending, m.effective_at, m.recorded_at, m.reference, m.metadata
    FROM movements m JOIN movement_heads h ON h.ledger = m.ledger AND h.account = m.account
    ORDER BY h.ledger_no, h.opened_position, m.position, m.seq;
    GET DIAGNOSTICS after = ROW_COUNT;
    -- Every line's account has a head (the projector refuses a movement of
    -- an account it has not seen open): a line left behind is a corrupt read
    -- model, and the migration stops rather than drop it.
    IF after <> before THEN
        RAISE EXCEPTION 'movements: % lines, % with a head: the read model is corrupt; rebuild it first', before, after;
    END IF;
END
$$;

DROP TABLE movements;
ALTER TABLE movement_lines_numbered RENAME TO movements;
ALTER TABLE movements ADD CONSTRAINT movements_pkey PRIMARY KEY (ledger_no, account_no, position, seq);
-- Statistics for the new table, but only for lines there are: an ANALYZE
-- of empty tables (a new database) records zero rows, and until autovacuum
-- analyzes them again the planner chose plans that made statement and
-- balance reads under load 50 times slower (docs/perf.md, session 16).
-- Tables never analyzed are estimated from their size instead.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM movements) THEN
        ANALYZE movements, movement_heads, movement_ledgers;
    END IF;
END
$$;

-- The lines by ledger and account, for operators and tests (every query of
-- ledgerd goes through the heads itself).
CREATE VIEW movement_lines AS
SELECT h.ledger, h.account, m.position, m.seq, m.posting_index, m.side, m.pending, m.kind, m.transfer_id,
    m.counter_accounts, m.amount, m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending,
    m.effective_at, m.recorded_at, m.reference, m.metadata
FROM movement_heads h JOIN movements m ON m.ledger_no = h.ledger_no AND m.account_no = h.opened_position;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON movements, movement_ledgers TO ledger_projector;
        GRANT USAGE ON SEQUENCE movement_ledger_no TO ledger_projector;
        GRANT SELECT ON movements, movement_ledgers, movement_lines TO ledger_reader, ledger_projector;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON movements, movement_ledgers TO ledger_app;
            GRANT USAGE ON SEQUENCE movement_ledger_no TO ledger_app;
            GRANT SELECT ON movement_lines TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON movements, movement_ledgers TO ledger_app;
        GRANT USAGE ON SEQUENCE movement_ledger_no TO ledger_app;
        GRANT SELECT ON movement_lines TO ledger_app;
    END IF;
END
$$;
