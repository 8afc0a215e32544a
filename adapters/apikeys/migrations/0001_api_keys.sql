-- API keys: who may call ledgerd, with which roles, on which ledgers. Only the
-- SHA-256 of a key's secret is kept: the key's text is shown once, when it is
-- made, and a copy of this table lets nobody call ledgerd. A revoked key stays
-- (revoked_at set) so that the record of who could do what is kept.
CREATE TABLE IF NOT EXISTS api_keys (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    roles       text[] NOT NULL CHECK (cardinality(roles) BETWEEN 1 AND 4
                    AND roles <@ ARRAY['writer', 'reader', 'auditor', 'admin']),
    -- NULL: every ledger, present and future.
    ledgers     text[] CHECK (cardinality(ledgers) BETWEEN 1 AND 64),
    description text NOT NULL DEFAULT '' CHECK (octet_length(description) <= 256),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX IF NOT EXISTS api_keys_active ON api_keys (created_at) WHERE revoked_at IS NULL;

-- ledgerd's role makes and revokes keys; it never deletes one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE ON api_keys TO ledger_app;
    END IF;
END
$$;
