-- The application role: what ledgerd needs, and no more. Run ledgerd as a login
-- role that is a member of ledger_app (CREATE ROLE ledgerd LOGIN IN ROLE
-- ledger_app) and the database itself refuses to edit or delete an event, on top
-- of the triggers. The role is made only where the migrating user may create
-- roles; elsewhere a DBA makes it and runs the grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
       AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            CREATE ROLE ledger_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- made meanwhile by a migration of another database of the cluster
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;
        REVOKE ALL ON events FROM ledger_app;
        GRANT SELECT, INSERT ON events TO ledger_app;
        GRANT SELECT, INSERT, UPDATE ON ledger_heads TO ledger_app;
        GRANT SELECT ON schema_migrations TO ledger_app;
        -- Snapshots are a cache of the log, not the record: they are replaced.
        GRANT SELECT, INSERT, DELETE ON snapshots TO ledger_app;
    END IF;
END
$$;
