-- Accounts as opened and amended: what ListAccounts filters and shows. The
-- balances projector (version 3) writes it in its own transaction, from
-- AccountOpened, AccountBoundsChanged, AccountMetadataSet and AccountClosed
-- only: a transfer never touches these rows, so the hot path (balances,
-- updated once per batch per account) pays nothing for them, and a balance
-- row stays narrow for its HOT updates.
--
-- account is COLLATE "C": the listing's order is the ids' byte order,
-- whatever the database's locale, and the primary key then serves both the
-- order and a prefix (a byte range, account >= p AND account < p'), where a
-- default-collation key would need text_pattern_ops for the range and a sort
-- for the order. Joins to balances compare under balances' collation
-- (account COLLATE "default"): equality is the same under both.
CREATE TABLE accounts (
    ledger          text        NOT NULL,
    account         text        COLLATE "C" NOT NULL,
    asset           text        NOT NULL,
    normal_balance  text        NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    -- NULL: no bound. At the asset's scale.
    min_balance     numeric,
    max_balance     numeric,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    closed          boolean     NOT NULL DEFAULT false,
    opened_position bigint      NOT NULL,
    opened_at       timestamptz NOT NULL,
    -- Position of the last event that changed the row.
    position        bigint      NOT NULL,
    PRIMARY KEY (ledger, account)
);

-- The asset filter, with a prefix or a cursor as a range on account: in id
-- order without a sort.
CREATE INDEX accounts_asset ON accounts (ledger, asset, account);
-- Closed accounts are few: status=closed reads this small index in id order;
-- status=open reads the primary key, skipping the few closed rows.
CREATE INDEX accounts_closed ON accounts (ledger, account) WHERE closed;
-- Metadata pairs (@>): jsonb_path_ops is smaller and faster than jsonb_ops for
-- containment, the only operator the filter uses. Most accounts carry no
-- metadata: the partial index leaves them out (ListAccounts says
-- metadata <> '{}' so that the planner may use it).
CREATE INDEX accounts_metadata ON accounts USING gin (metadata jsonb_path_ops) WHERE metadata <> '{}'::jsonb;

-- Read models projected before this migration: the accounts the balances
-- read model holds, each with its opening and its last bounds and metadata
-- from the log up to the ledger's balances checkpoint. A rebuild's shadow
-- (ledger~rebuild) is not backfilled: the projector's version moves to 3, so
-- a version-2 shadow is dropped and the rebuild starts afresh.
-- (In a block: a database with read models and no log, as some tests make,
-- has nothing to backfill, and PL/pgSQL plans a statement only when it runs.)
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        -- One pass over the log's account events (hash joins), not a
        -- look-up per account: the events table has no index on the id.
        WITH ev AS (
            SELECT e.ledger, e.payload->>'id' AS account, e.type, e.position, e.recorded_at, e.payload::jsonb AS p
            FROM events e
            JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'balances'
            WHERE e.type IN ('AccountOpened', 'AccountBoundsChanged', 'AccountMetadataSet', 'AccountClosed')
                AND e.position <= c.position
        ), bounds AS (
            SELECT DISTINCT ON (ledger, account) * FROM ev WHERE type = 'AccountBoundsChanged'
            ORDER BY ledger, account, position DESC
        ), meta AS (
            SELECT DISTINCT ON (ledger, account) * FROM ev WHERE type = 'AccountMetadataSet'
            ORDER BY ledger, account, position DESC
        )
        INSERT INTO accounts (ledger, account, asset, normal_balance, min_balance, max_balance, metadata, closed,
            opened_position, opened_at, position)
        SELECT o.ledger, o.account, b.asset, b.normal_balance,
            (coalesce(bd.p, o.p)->>'min_balance')::numeric,
            (coalesce(bd.p, o.p)->>'max_balance')::numeric,
            coalesce(coalesce(md.p, o.p)->'metadata', '{}'::jsonb),
            cl.position IS NOT NULL, o.position, o.recorded_at,
            greatest(o.position, bd.position, md.position, cl.position)
        FROM ev o
        JOIN balances b ON b.ledger = o.ledger AND b.account = o.account
        LEFT JOIN bounds bd ON bd.ledger = o.ledger AND bd.account = o.account
        LEFT JOIN meta md ON md.ledger = o.ledger AND md.account = o.account
        LEFT JOIN ev cl ON cl.type = 'AccountClosed' AND cl.ledger = o.ledger AND cl.account = o.account
        WHERE o.type = 'AccountOpened';
    END IF;
END
$$;

-- The live checkpoints' rows are version 3's now. A shadow keeps version 2:
-- it has no accounts rows, and the next rebuild drops it.
UPDATE projection_checkpoints SET version = 3 WHERE projection = 'balances' AND strpos(ledger, '~') = 0;

-- Grants as 0014_periods.sql gives them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO ledger_projector;
        GRANT SELECT ON accounts TO ledger_reader;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO ledger_app;
    END IF;
END
$$;
