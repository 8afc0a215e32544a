-- Where each projection of each ledger stands. A batch of a projection moves its
-- checkpoint in the same transaction as its read model, from the position it
-- started at: exactly-once in effect.
CREATE TABLE projection_checkpoints (
    ledger     text        NOT NULL,
    projection text        NOT NULL,
    version    int         NOT NULL,
    position   bigint      NOT NULL CHECK (position >= 0),
    -- recorded_at of the event at position: the projection's lag in time.
    event_at   timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger, projection)
);

-- Assets and their scale, so that amounts print with exactly that many digits.
CREATE TABLE assets (
    ledger   text     NOT NULL,
    code     text     NOT NULL,
    scale    smallint NOT NULL,
    position bigint   NOT NULL,
    PRIMARY KEY (ledger, code)
);

-- Balances per account as exact NUMERIC in the asset's units.
CREATE TABLE balances (
    ledger          text    NOT NULL,
    account         text    NOT NULL,
    asset           text    NOT NULL,
    scale           smallint NOT NULL,
    normal_balance  text    NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    debits_posted   numeric NOT NULL,
    credits_posted  numeric NOT NULL,
    debits_pending  numeric NOT NULL,
    credits_pending numeric NOT NULL,
    -- Position of the last event that changed the account.
    position        bigint  NOT NULL,
    PRIMARY KEY (ledger, account)
) WITH (fillfactor = 70); -- room on each page for HOT updates: a balance row changes on every batch
