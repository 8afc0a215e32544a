-- Whether an alert is raised: the position of its AlertRaised in the log,
-- NULL until the alerts projector (version 2) meets it. Writer nodes sweep
-- the ledgers with an alert not raised (alerts_unraised, normally empty)
-- and start the writer of one that no node writes: its alerter raises the
-- alert. An alert a projector on another node computed after the ledger's
-- writer went idle (a backlog, an outage of the projector nodes) no longer
-- waits for the ledger's next command, which could be a debit the alert's
-- freeze should have refused. The column only says when to start a
-- writer: what is raised, the writer decides from its own state (the log).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS raised bigint;

-- Alerts projected before this migration: from the log, each by its
-- position and its id after the ledger's name (a log imported under
-- another name raises its alerts under the source's). A rebuild's shadow
-- is not backfilled: its version stays 1, and the next rebuild drops it
-- (as 0030's).
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        UPDATE alerts a SET raised = e.position
        FROM events e
        WHERE e.type = 'AlertRaised' AND e.ledger = a.ledger AND a.raised IS NULL
            AND (e.payload->>'position')::bigint = a.position
            AND substr(e.payload->>'id', strpos(e.payload->>'id', ':') + 1) = substr(a.id, strpos(a.id, ':') + 1);
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS alerts_unraised ON alerts (ledger, position) WHERE raised IS NULL;

UPDATE projection_checkpoints SET version = 2 WHERE projection = 'alerts' AND strpos(ledger, '~') = 0;
