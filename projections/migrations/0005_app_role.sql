-- The read models are derived data: ledgerd's role may write them freely (and
-- rebuilds replace them). See eventstore's 0003_app_role.sql for the role.
DO $$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        FOREACH t IN ARRAY ARRAY['projection_checkpoints', 'assets', 'balances', 'trial_balances',
            'trial_balance_history', 'movements', 'movement_heads', 'movement_assets', 'movement_clock',
            'transfers', 'transfer_accounts'] LOOP
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ledger_app', t);
        END LOOP;
    END IF;
END
$$;
