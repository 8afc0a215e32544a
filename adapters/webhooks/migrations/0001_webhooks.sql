-- Webhooks (docs/webhooks.md): subscriptions with their cursors, and the
-- delivery log, whose dead letters wait for a replay. Configuration, like
-- the API keys: not events of the log.
--
-- The secret is kept in clear: ledgerd needs it to sign every delivery (an
-- HMAC key cannot be kept as a hash). It is answered once, by
-- CreateSubscription, and never again; a copy of this table lets its holder
-- forge deliveries to the subscribers, so it is guarded as the database is.
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id                 text PRIMARY KEY CHECK (id ~ '^wh_[0-9a-f]{16}$'),
    ledger             text NOT NULL,
    url                text NOT NULL CHECK (octet_length(url) BETWEEN 1 AND 2048),
    secret             bytea NOT NULL CHECK (length(secret) = 32),
    -- Empty: every type.
    event_types        text[] NOT NULL DEFAULT '{}' CHECK (cardinality(event_types) <= 64),
    -- Empty: every account.
    account_pattern    text NOT NULL DEFAULT '' CHECK (octet_length(account_pattern) <= 128),
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- The cursor: every position up to it was delivered, given up (a dead
    -- letter) or filtered out. hash is the event's at the cursor (NULL:
    -- read from the log when the dispatcher starts: after a replay).
    delivered_position bigint NOT NULL CHECK (delivered_position >= 0),
    delivered_hash     bytea CHECK (length(delivered_hash) = 32),
    -- Bumped by each replay: the dispatcher's conditional updates see that
    -- the cursor moved under it, and it reloads.
    generation         bigint NOT NULL DEFAULT 0,
    -- The endpoint's circuit as the dispatcher last saw it, and why the
    -- subscription is stopped ("" when it is not: a broken hash chain).
    circuit            text NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open', 'half-open')),
    fault              text NOT NULL DEFAULT '' CHECK (octet_length(fault) <= 1024),
    -- The ledgerd that dispatches the subscription, until lease_until: one
    -- at a time across nodes.
    lease_owner        text,
    lease_until        timestamptz
);

CREATE INDEX IF NOT EXISTS webhook_subscriptions_ledger ON webhook_subscriptions (ledger, created_at, id);

-- One row per (subscription, position) delivered or being delivered; rows
-- outlive their subscription and are removed after the retention
-- (ledgerd's cleanup, by last_attempt_at).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    subscription_id  text NOT NULL,
    position         bigint NOT NULL CHECK (position > 0),
    ledger           text NOT NULL,
    event_type       text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    -- replay: a dead letter queued again (status pending, behind the cursor).
    replay           boolean NOT NULL DEFAULT false,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    response_code    integer NOT NULL DEFAULT 0,
    latency_ms       integer NOT NULL DEFAULT 0,
    error            text NOT NULL DEFAULT '' CHECK (octet_length(error) <= 1024),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, position)
);

-- ListDeliveries by status, newest first; the dead letters a replay queues.
CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries (subscription_id, status, position);
-- The replays a dispatcher delivers before going on.
CREATE INDEX IF NOT EXISTS webhook_deliveries_replay ON webhook_deliveries (subscription_id, position) WHERE replay;
-- The cleanup.
CREATE INDEX IF NOT EXISTS webhook_deliveries_updated ON webhook_deliveries (updated_at);

-- The dispatcher runs as the projector's role (it reads the log as the
-- projectors do and writes these tables), and so does WebhookService. The
-- reader's role gets nothing: the subscriptions hold their secrets.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_deliveries TO ledger_projector;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
       AND NOT pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_deliveries TO ledger_app;
    END IF;
END
$$;
