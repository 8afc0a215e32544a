-- An account's freeze in the accounts read model: frozen_position is the
-- position of the AccountFrozen that froze it, NULL while it is not frozen
-- (an AccountUnfrozen clears it; a freeze of a frozen account, which an
-- alert's freeze action records, leaves it). The movements projector
-- (version 3) writes it.
ALTER TABLE accounts ADD COLUMN frozen_position bigint;

-- Read models projected before this migration: each account's freeze from
-- the log up to the ledger's movements checkpoint, the first AccountFrozen
-- after its last AccountUnfrozen. A rebuild's shadow is not backfilled: its
-- version stays 2, so the next rebuild drops it and starts afresh. (In a
-- block, as 0015's: a database with read models and no log has nothing to
-- backfill.)
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        WITH ev AS (
            SELECT e.ledger, e.payload->>'id' AS account, e.type, e.position
            FROM events e
            JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'movements'
            WHERE e.type IN ('AccountFrozen', 'AccountUnfrozen') AND e.position <= c.position
        ), thawed AS (
            SELECT ledger, account, max(position) AS position FROM ev WHERE type = 'AccountUnfrozen'
            GROUP BY ledger, account
        ), frozen AS (
            SELECT f.ledger, f.account, min(f.position) AS position
            FROM ev f
            LEFT JOIN thawed t ON t.ledger = f.ledger AND t.account = f.account
            WHERE f.type = 'AccountFrozen' AND f.position > coalesce(t.position, 0)
            GROUP BY f.ledger, f.account
        ), touched AS (
            SELECT ledger, account, max(position) AS position FROM ev GROUP BY ledger, account
        )
        -- position is the last event that changed the row: a freeze or an
        -- unfreeze now changes it.
        UPDATE accounts a SET frozen_position = f.position, position = greatest(a.position, l.position)
        FROM touched l
        LEFT JOIN frozen f ON f.ledger = l.ledger AND f.account = l.account
        WHERE a.ledger = l.ledger AND a.account = l.account;
    END IF;
END
$$;

-- The live checkpoints' rows are version 3's now. A shadow keeps version 2:
-- its accounts rows have no freezes, and the next rebuild drops it.
UPDATE projection_checkpoints SET version = 3 WHERE projection = 'movements' AND strpos(ledger, '~') = 0;
