-- The event log: the source of truth. One row per event, gapless positions per
-- ledger, each row sealed by a SHA-256 hash chained to the previous one.
CREATE TABLE ledger_heads (
    ledger   text   PRIMARY KEY,
    -- The position of the ledger's last event. An append moves it from the
    -- position its writer expects; zero rows updated means another writer won.
    position bigint NOT NULL CHECK (position >= 0),
    hash     bytea  NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE events (
    ledger         text        NOT NULL,
    position       bigint      NOT NULL CHECK (position > 0),
    type           text        NOT NULL,
    schema_version smallint    NOT NULL,
    recorded_at    timestamptz NOT NULL,
    command_id     text        NOT NULL,
    -- json, not jsonb: the exact bytes that were hashed are kept.
    payload        json        NOT NULL,
    prev_hash      bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (ledger, position)
);

-- Nothing is ever edited or deleted: the database refuses it, whoever asks.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
