-- The read models: the projector role writes them (rebuilds replace them:
-- SELECT, INSERT, UPDATE, DELETE, never TRUNCATE), the reader role reads
-- them. eventstore's 0005_roles.sql makes the roles. The read models are the
-- tables the earlier migrations let ledger_app write freely; each moves to
-- the two roles here, and ledger_app keeps it as a member of both. A later
-- migration grants a new read model to ledger_projector and ledger_reader.
DO $$
DECLARE
    t      text;
    member boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
       OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        RETURN;
    END IF;
    -- ledger_app keeps its own grants where it could not be made a member
    -- of both roles.
    member := pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER');
    FOR t IN SELECT c.relname FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
              AND a.grantee = 'ledger_app'::regrole
            GROUP BY c.relname
            HAVING array_agg(a.privilege_type::text) @> ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ledger_projector', t);
        EXECUTE format('GRANT SELECT ON %I TO ledger_reader', t);
        IF member THEN
            EXECUTE format('REVOKE ALL ON %I FROM ledger_app', t);
        END IF;
    END LOOP;
END
$$;
