-- Transfers keyed by the ledger key's number (docs/perf.md, session 16), as
-- the statement lines are since 0023: a rebuild's swap renames the shadow's
-- transfer_ledgers row to the ledger and deletes the old number's rows,
-- where it rewrote every row (14 of a 1M-transfer rebuild's 26 s, during
-- which the live transfers projection waited). Queries find the number by
-- the ledger's name in the same statement.
--
-- The migration rewrites the transfers once, holding them locked: transfer
-- queries and the transfers projection wait for it (docs/operations.md). An
-- older ledgerd's transfers projector and its transfer queries fail against
-- the new table until it is upgraded.
-- Locked first, and for the whole migration (see 0023).
LOCK TABLE transfers IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE transfer_ledger_no AS integer;

CREATE TABLE transfer_ledgers (
    ledger    text COLLATE "C" PRIMARY KEY,
    ledger_no integer NOT NULL UNIQUE DEFAULT nextval('transfer_ledger_no')
);
ALTER SEQUENCE transfer_ledger_no OWNED BY transfer_ledgers.ledger_no;

INSERT INTO transfer_ledgers (ledger) SELECT DISTINCT ledger FROM transfers ORDER BY ledger;

-- Columns as 0003_transfers.sql made them and later migrations changed them,
-- but for the key.
CREATE TABLE transfers_numbered (
    ledger_no        integer     NOT NULL,
    id               text        NOT NULL,
    kind             text        NOT NULL CONSTRAINT transfers_kind_check
        CHECK (kind IN ('transfer', 'pending', 'post', 'void', 'reversal')),
    status           text        NOT NULL CONSTRAINT transfers_status_check
        CHECK (status IN ('posted', 'pending', 'pending_posted', 'voided', 'expired', 'reversed', 'partially_reversed')),
    position         bigint      NOT NULL,
    postings         jsonb       NOT NULL,
    reference        text,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    effective_at     timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    pending_id       text,
    resolved_by      text,
    reverses         text,
    reversed_by      text[]      NOT NULL DEFAULT '{}'::text[],
    expires_at       timestamptz,
    updated_position bigint      NOT NULL,
    effective_far    boolean     NOT NULL
        GENERATED ALWAYS AS (abs(extract(epoch FROM effective_at - recorded_at)) > 300) STORED
) WITH (fillfactor = 90);

DO $$
DECLARE
    before bigint;
    after  bigint;
BEGIN
    SELECT count(*) INTO before FROM transfers;
    INSERT INTO transfers_numbered (ledger_no, id, kind, status, position, postings, reference, metadata, effective_at,
        recorded_at, pending_id, resolved_by, reverses, reversed_by, expires_at, updated_position)
    SELECT l.ledger_no, t.id, t.kind, t.status, t.position, t.postings, t.reference, t.metadata, t.effective_at,
        t.recorded_at, t.pending_id, t.resolved_by, t.reverses, t.reversed_by, t.expires_at, t.updated_position
    FROM transfers t JOIN transfer_ledgers l ON l.ledger = t.ledger
    ORDER BY l.ledger_no, t.position;
    GET DIAGNOSTICS after = ROW_COUNT;
    IF after <> before THEN
        RAISE EXCEPTION 'transfers: % rows, % numbered', before, after;
    END IF;
END
$$;

DROP TABLE transfers;
ALTER TABLE transfers_numbered RENAME TO transfers;
ALTER TABLE transfers ADD CONSTRAINT transfers_pkey PRIMARY KEY (ledger_no, id);
CREATE UNIQUE INDEX transfers_position ON transfers (ledger_no, position);
CREATE INDEX transfers_reference ON transfers (ledger_no, reference, position) WHERE reference IS NOT NULL;
CREATE INDEX transfers_metadata ON transfers USING gin (metadata) WHERE metadata <> '{}'::jsonb;
CREATE INDEX transfers_status ON transfers (ledger_no, status, position) WHERE status <> 'posted';
CREATE INDEX transfers_effective_far ON transfers (ledger_no, effective_at, position) WHERE effective_far;

-- The transfers by ledger, for operators and tests.
CREATE VIEW transfer_rows AS
SELECT l.ledger, t.id, t.kind, t.status, t.position, t.postings, t.reference, t.metadata, t.effective_at,
    t.recorded_at, t.pending_id, t.resolved_by, t.reverses, t.reversed_by, t.expires_at, t.updated_position,
    t.effective_far
FROM transfer_ledgers l JOIN transfers t ON t.ledger_no = l.ledger_no;

-- Statistics only for rows there are (see 0023).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM transfers) THEN
        ANALYZE transfers, transfer_ledgers;
    END IF;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON transfers, transfer_ledgers TO ledger_projector;
        GRANT USAGE ON SEQUENCE transfer_ledger_no TO ledger_projector;
        GRANT SELECT ON transfers, transfer_ledgers, transfer_rows TO ledger_reader, ledger_projector;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON transfers, transfer_ledgers TO ledger_app;
            GRANT USAGE ON SEQUENCE transfer_ledger_no TO ledger_app;
            GRANT SELECT ON transfer_rows TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON transfers, transfer_ledgers TO ledger_app;
        GRANT USAGE ON SEQUENCE transfer_ledger_no TO ledger_app;
        GRANT SELECT ON transfer_rows TO ledger_app;
    END IF;
END
$$;
