-- The trial balance: Σ of every account's balances per asset, kept by the
-- balances projector in its own transaction (version 2), with its history for
-- as-of queries. See projections/balances.go.

-- Closed accounts keep their row (a closed account may keep a posted balance).
-- A constant default: added without rewriting the table.
ALTER TABLE balances ADD COLUMN closed boolean NOT NULL DEFAULT false;

-- One row per asset of each ledger, created when the asset is defined. After
-- every batch, debits = credits, posted and pending, for each asset it touched:
-- the projector checks it before committing.
CREATE TABLE trial_balances (
    ledger          text    NOT NULL,
    asset           text    NOT NULL,
    debits_posted   numeric NOT NULL,
    credits_posted  numeric NOT NULL,
    debits_pending  numeric NOT NULL,
    credits_pending numeric NOT NULL,
    -- Accounts open in the asset, and closed.
    accounts        bigint  NOT NULL CHECK (accounts >= 0),
    accounts_closed bigint  NOT NULL CHECK (accounts_closed >= 0),
    -- The last position of the last batch that changed the row.
    position        bigint  NOT NULL,
    PRIMARY KEY (ledger, asset)
);

-- The trial balance of each asset as it stood at the end of each batch that
-- touched it: position is that batch's last position, batch_from its first.
-- The rows of one batch share both. An as-of answer for position P takes,
-- per asset, the last row before the batch holding P and folds that batch's
-- events up to P from the log (at most one batch: see queries/trialbalance.go).
CREATE TABLE trial_balance_history (
    ledger          text    NOT NULL,
    asset           text    NOT NULL,
    position        bigint  NOT NULL,
    batch_from      bigint  NOT NULL CHECK (batch_from BETWEEN 1 AND position),
    debits_posted   numeric NOT NULL,
    credits_posted  numeric NOT NULL,
    debits_pending  numeric NOT NULL,
    credits_pending numeric NOT NULL,
    accounts        bigint  NOT NULL,
    accounts_closed bigint  NOT NULL,
    PRIMARY KEY (ledger, asset, position)
);

-- Finds the batch holding a position: the first batch end at or after it.
CREATE INDEX trial_balance_history_position ON trial_balance_history (ledger, position);

-- Read models projected before this migration: closes are marked from the log
-- up to each ledger's balances checkpoint (the projector ignored them until
-- now), then the trial balance is summed from the balances, as of that
-- checkpoint. Their history starts there, as one batch covering 1..checkpoint:
-- an as-of answer before it would fold that whole range, and is refused
-- unless the range is small (ErrHistoryUnavailable).
-- (In a block: a database with read models and no log, as some tests make,
-- has nothing to backfill, and PL/pgSQL plans a statement only when it runs.)
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        UPDATE balances b SET closed = true, position = greatest(b.position, e.position)
        FROM events e
        JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'balances'
        WHERE e.type = 'AccountClosed' AND e.position <= c.position
            AND b.ledger = e.ledger AND b.account = e.payload->>'id';
    END IF;
END
$$;

INSERT INTO trial_balances (ledger, asset, debits_posted, credits_posted, debits_pending, credits_pending,
    accounts, accounts_closed, position)
SELECT a.ledger, a.code,
    round(coalesce(sum(b.debits_posted), 0), a.scale), round(coalesce(sum(b.credits_posted), 0), a.scale),
    round(coalesce(sum(b.debits_pending), 0), a.scale), round(coalesce(sum(b.credits_pending), 0), a.scale),
    count(b.account) FILTER (WHERE NOT b.closed), count(b.account) FILTER (WHERE b.closed), c.position
FROM assets a
JOIN projection_checkpoints c ON c.ledger = a.ledger AND c.projection = 'balances'
LEFT JOIN balances b ON b.ledger = a.ledger AND b.asset = a.code
GROUP BY a.ledger, a.code, a.scale, c.position;

INSERT INTO trial_balance_history (ledger, asset, position, batch_from, debits_posted, credits_posted,
    debits_pending, credits_pending, accounts, accounts_closed)
SELECT ledger, asset, position, 1, debits_posted, credits_posted, debits_pending, credits_pending,
    accounts, accounts_closed
FROM trial_balances WHERE position > 0;

UPDATE projection_checkpoints SET version = 2 WHERE projection = 'balances';
