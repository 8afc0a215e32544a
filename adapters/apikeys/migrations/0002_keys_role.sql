-- Only the key-management role writes API keys (eventstore's 0005_roles.sql
-- makes it): a login that may append events may not mint itself an admin
-- key. ledger_app keeps key management as a member of ledger_keys.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_keys') THEN
        -- Makes and revokes keys; never deletes one.
        GRANT SELECT, INSERT, UPDATE ON api_keys TO ledger_keys;
        -- ledger_app keeps its own grant where it could not be made a
        -- member of ledger_keys.
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND pg_has_role('ledger_app', 'ledger_keys', 'MEMBER') THEN
            REVOKE ALL ON api_keys FROM ledger_app;
        END IF;
    END IF;
END
$$;
