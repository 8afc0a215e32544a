-- An account's balance is its last statement line's totals (docs/perf.md,
-- "Balances from the statement lines"). The balances projection kept the
-- same four totals in a row per account, updated in every batch that moved
-- the account: with single transfers, two row updates a transfer and a
-- fifth of PostgreSQL's CPU, for a copy of what the movements projection
-- already holds. Queries now read an account's totals from its last line
-- (one backward step on the lines' primary key, as the balances as of a
-- position always did), at the movements projection's checkpoint.
--
-- So that a listing of accounts with their balances reads one projection at
-- one checkpoint, the accounts table moves to the movements projection
-- (version 2). The balances projection (version 4) keeps the trial balance,
-- the assets, the periods and the categories, and, for the trial balance's
-- account counts, each account's asset and whether it is closed: the
-- balances table without its totals, renamed trial_accounts (written when an
-- account opens or closes, never by a transfer).
ALTER TABLE balances DROP COLUMN debits_posted, DROP COLUMN credits_posted,
    DROP COLUMN debits_pending, DROP COLUMN credits_pending;
ALTER TABLE balances RENAME TO trial_accounts;
ALTER TABLE trial_accounts RENAME CONSTRAINT balances_pkey TO trial_accounts_pkey;
-- Written twice in an account's life now: no room kept for updates.
ALTER TABLE trial_accounts SET (fillfactor = 100);

-- The accounts rows, written so far at the balances projection's checkpoint,
-- are written again from the log up to the movements projection's (as
-- 0015_accounts.sql first wrote them), with each account's asset and side
-- from movement_heads. Shadows (ledger~rebuild) get none: both projectors'
-- versions move, so the next rebuild drops an old shadow and starts afresh.
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        DELETE FROM accounts;
        -- A trial_accounts row's position is its account's opening, or its
        -- closing (a balances row's was its totals' last change).
        UPDATE trial_accounts t SET position = e.position
        FROM (
            SELECT DISTINCT ON (e.ledger, e.payload->>'id') e.ledger, e.payload->>'id' AS account, e.position
            FROM events e
            JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'balances'
            WHERE e.type IN ('AccountOpened', 'AccountClosed') AND e.position <= c.position
            ORDER BY e.ledger, e.payload->>'id', e.position DESC
        ) e
        WHERE t.ledger = e.ledger AND t.account = e.account;
        WITH ev AS (
            SELECT e.ledger, e.payload->>'id' AS account, e.type, e.position, e.recorded_at, e.payload::jsonb AS p
            FROM events e
            JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'movements'
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
        SELECT o.ledger, o.account, h.asset, h.normal_balance,
            (coalesce(bd.p, o.p)->>'min_balance')::numeric,
            (coalesce(bd.p, o.p)->>'max_balance')::numeric,
            coalesce(coalesce(md.p, o.p)->'metadata', '{}'::jsonb),
            cl.position IS NOT NULL, o.position, o.recorded_at,
            greatest(o.position, bd.position, md.position, cl.position)
        FROM ev o
        JOIN movement_heads h ON h.ledger = o.ledger AND h.account = o.account
        LEFT JOIN bounds bd ON bd.ledger = o.ledger AND bd.account = o.account
        LEFT JOIN meta md ON md.ledger = o.ledger AND md.account = o.account
        LEFT JOIN ev cl ON cl.type = 'AccountClosed' AND cl.ledger = o.ledger AND cl.account = o.account
        WHERE o.type = 'AccountOpened';
    END IF;
END
$$;

UPDATE projection_checkpoints SET version = 4 WHERE projection = 'balances' AND strpos(ledger, '~') = 0;
UPDATE projection_checkpoints SET version = 2 WHERE projection = 'movements' AND strpos(ledger, '~') = 0;
