-- The generation of a ledger's reconciliation rows: a random value set when
-- the projector first applies a batch of the ledger. A rebuild builds its
-- shadow under another generation and swaps it in with the rows, so a
-- projector holding the old rows in memory sees the change and reloads.
CREATE TABLE recon_generations (
    ledger     text NOT NULL PRIMARY KEY,
    generation text NOT NULL
);

-- Matches listed by position (ListUnmatched MATCHES), page after page.
CREATE INDEX recon_matches_position ON recon_matches (ledger, account, position);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON recon_generations TO ledger_app;
    END IF;
END
$$;
