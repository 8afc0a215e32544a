-- The ledger's categories (CategoryDefined events), kept by the balances
-- projector in its own transaction: ListCategories and GetCategoryBalances
-- read them beside the balances they roll up. A row is the category's last
-- definition and its position; parent is NULL for a root. At most 10,000 a
-- ledger (the domain's bound), read whole by a roll-up.
-- No backfill: no log written before this migration holds a CategoryDefined.
CREATE TABLE categories (
    ledger      text   NOT NULL,
    name        text   NOT NULL,
    parent      text,
    patterns    text[] NOT NULL,
    description text   NOT NULL,
    position    bigint NOT NULL,
    PRIMARY KEY (ledger, name),
    CHECK (parent IS NULL OR parent <> name)
);

-- Grants as 0013_roles.sql leaves the read models: the projector role writes,
-- the reader role reads, and ledger_app keeps its own grant only where it is
-- not a member of both (or the roles could not be made).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON categories TO ledger_projector;
        GRANT SELECT ON categories TO ledger_reader;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON categories TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON categories TO ledger_app;
    END IF;
END
$$;
