-- Ledgers and their lifecycle. A ledger is created explicitly (CreateLedger,
-- or DefineAsset by an admin) or by its first append; its status says what it
-- accepts:
--   active     commands are accepted;
--   importing  a log import is under way or was interrupted: only the import
--              appends (eventstore.AppendImport), and its last chunk sets the
--              ledger active in the same transaction;
--   archived   read-only: no append is accepted.
-- The writer's append reads the row FOR SHARE, so a status change waits for
-- appends in flight, and no append commits after it.
CREATE TABLE ledgers (
    ledger            text        PRIMARY KEY,
    status            text        NOT NULL CHECK (status IN ('active', 'importing', 'archived')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Every ledger written before this migration is active.
INSERT INTO ledgers (ledger, status) SELECT ledger, 'active' FROM ledger_heads ON CONFLICT (ledger) DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        -- Never deleted: an archived ledger keeps its name and log.
        GRANT SELECT, INSERT, UPDATE ON ledgers TO ledger_app;
    END IF;
END
$$;
