-- What stops the read side, kept where every ledgerd sees it (projection
-- status, /readyz, the metrics are answered by any process, the runners run
-- in one). A projection's fault: the event it refused (a broken chain, an
-- event not in the log), set when it stops, cleared when it applies again or
-- the stream is repaired. A stream's fault: the relay found the stream's tail
-- ahead of the log or different from it, and publishes nothing on top.
ALTER TABLE projection_checkpoints ADD COLUMN fault text, ADD COLUMN fault_at timestamptz;

CREATE TABLE stream_faults (
    ledger   text        PRIMARY KEY,
    fault    text        NOT NULL,
    fault_at timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON stream_faults TO ledger_app;
    END IF;
END
$$;
