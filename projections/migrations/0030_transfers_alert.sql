-- A hold a monitoring rule placed names its alert (TransferPending.alert):
-- GetTransfers and ListTransfers serve it, so whoever looks at a hold sees
-- which alert placed it. The transfers projector (version 2) writes it.
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS alert text COLLATE "C";

-- Read models projected before this migration: the rules' holds up to the
-- ledger's transfers checkpoint, from the log (the hold action is a day
-- older than this migration: few rows, if any). A rebuild's shadow is not
-- backfilled: its version stays 1, so the next rebuild drops it and starts
-- afresh. (In a block, as 0025's: a database with read models and no log
-- has nothing to backfill.)
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        UPDATE transfers t SET alert = e.payload->>'alert'
        FROM events e
        JOIN projection_checkpoints c ON c.ledger = e.ledger AND c.projection = 'transfers'
        JOIN transfer_ledgers l ON l.ledger = e.ledger
        WHERE e.type = 'TransferPending' AND e.payload->>'alert' IS NOT NULL AND e.position <= c.position
            AND t.ledger_no = l.ledger_no AND t.id = e.payload->>'id';
    END IF;
END
$$;

-- As 0027 made it, with the alert at the end (which keeps its grants).
CREATE OR REPLACE VIEW transfer_rows AS
SELECT l.ledger, t.id, t.kind, t.status, t.position, t.postings, t.reference, t.metadata, t.effective_at,
    t.recorded_at, t.pending_id, t.resolved_by, t.reverses, t.reversed_by, t.expires_at, t.updated_position,
    t.effective_far, t.alert
FROM transfer_ledgers l JOIN transfers t ON t.ledger_no = l.ledger_no;

-- The live checkpoints' rows are version 2's now. A shadow keeps version 1:
-- its rows have no alerts, and the next rebuild drops it.
UPDATE projection_checkpoints SET version = 2 WHERE projection = 'transfers' AND strpos(ledger, '~') = 0;
