-- Closed accounting periods (PeriodClosed events), kept by the balances
-- projector in its own transaction: ListPeriods reads them. A row is the
-- event as written, with its position and recorded time; the trial balance
-- is the event's lines as JSON (asset, debits_posted, credits_posted).
-- No backfill: no log written before this migration holds a PeriodClosed.
CREATE TABLE periods (
    ledger         text        NOT NULL,
    position       bigint      NOT NULL,
    -- NULL for a ledger's first period: it starts at the ledger's beginning.
    period_start   timestamptz,
    period_end     timestamptz NOT NULL,
    accounts       bigint      NOT NULL,
    closing_digest text        NOT NULL,
    trial_balance  jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (ledger, position),
    CHECK (period_start IS NULL OR period_end > period_start)
);

CREATE UNIQUE INDEX periods_end ON periods (ledger, period_end);

-- Grants as 0013_roles.sql leaves the read models: the projector role writes,
-- the reader role reads, and ledger_app keeps its own grant only where it is
-- not a member of both (or the roles could not be made).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON periods TO ledger_projector;
        GRANT SELECT ON periods TO ledger_reader;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON periods TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON periods TO ledger_app;
    END IF;
END
$$;
