-- A transfer's postings as json, not jsonb. No index or query reads inside
-- them but ListTransfers' asset filter, which reads a bounded scan's rows
-- (json_array_elements serves it as well); every other read sends them out
-- whole and every write takes them in whole. jsonb parsed them on the way in
-- and printed them again on the way out: 0.65 µs a transfer written and
-- 0.43 µs a transfer read more than json, which checks the text and keeps it
-- (1M transfers: COPY in 2.8 → 2.2 s, out 1.31 → 0.89 s; docs/perf.md,
-- "Session 31"). The rows are rewritten once here: about 4 s for 1M
-- transfers with their indexes.
DROP VIEW transfer_rows;
ALTER TABLE transfers ALTER COLUMN postings TYPE json USING postings::json;

-- As 0024 made it.
CREATE VIEW transfer_rows AS
SELECT l.ledger, t.id, t.kind, t.status, t.position, t.postings, t.reference, t.metadata, t.effective_at,
    t.recorded_at, t.pending_id, t.resolved_by, t.reverses, t.reversed_by, t.expires_at, t.updated_position,
    t.effective_far
FROM transfer_ledgers l JOIN transfers t ON t.ledger_no = l.ledger_no;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT ON transfer_rows TO ledger_reader, ledger_projector;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT ON transfer_rows TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT ON transfer_rows TO ledger_app;
    END IF;
END
$$;
