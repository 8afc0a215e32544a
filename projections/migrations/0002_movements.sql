-- The movements projection: one row per movement of an account (the lines of
-- its statement) with the account's four totals just after it, so that a
-- statement's running balance, or a balance as of any position, is one index
-- read, never a replay.
--
-- Amounts: a posted line (pending = false) has a positive amount on `side`,
-- the side of this account in the posting. A pending line (pending = true)
-- moves the pending total of `side`: positive when a hold is placed
-- (TransferPending), negative when it is released (PendingPosted's held part,
-- PendingVoided, PendingExpired). So the sum of the amounts of an account's
-- lines per (side, pending) is its four totals: debits_posted, credits_posted,
-- debits_pending, credits_pending.
CREATE TABLE movements (
    ledger           text        NOT NULL,
    account          text        NOT NULL,
    position         bigint      NOT NULL,
    -- The line's place among this account's lines of the event at position:
    -- 0, 1, ... in the order the totals were accumulated. Within a posting, a
    -- release of held funds comes before the posted amount, so the posted
    -- line of a PendingPosted shows the available balance after the event.
    seq              smallint    NOT NULL,
    -- The posting of the event the line comes from.
    posting_index    int         NOT NULL,
    side             text        NOT NULL CHECK (side IN ('debit', 'credit')),
    pending          boolean     NOT NULL,
    -- The event type: TransferCommitted, TransferPending, PendingPosted, ...
    kind             text        NOT NULL,
    -- The event's own id; for PendingExpired, the hold's id.
    transfer_id      text        NOT NULL,
    -- The other account of the posting.
    counter_accounts text[]      NOT NULL,
    amount           numeric     NOT NULL,
    debits_posted    numeric     NOT NULL,
    credits_posted   numeric     NOT NULL,
    debits_pending   numeric     NOT NULL,
    credits_pending  numeric     NOT NULL,
    -- Business time; the recorded time for voids and expiries, which have none.
    effective_at     timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    reference        text,
    metadata         jsonb,
    PRIMARY KEY (ledger, account, position, seq)
);

-- Effective-time statements and balances as of an effective time.
CREATE INDEX movements_effective_at ON movements (ledger, account, effective_at);

-- Each account's totals after its last movement, read at the start of a batch
-- to continue the running totals: one row per account, updated once per batch
-- that touches it. opened_position says from where the account exists.
CREATE TABLE movement_heads (
    ledger          text     NOT NULL,
    account         text     NOT NULL,
    asset           text     NOT NULL,
    scale           smallint NOT NULL,
    normal_balance  text     NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    debits_posted   numeric  NOT NULL,
    credits_posted  numeric  NOT NULL,
    debits_pending  numeric  NOT NULL,
    credits_pending numeric  NOT NULL,
    -- Position of the account's last movement (its opening before any).
    position        bigint   NOT NULL,
    opened_position bigint   NOT NULL,
    PRIMARY KEY (ledger, account)
) WITH (fillfactor = 70); -- HOT updates: a head changes with every batch that moves its account

-- Asset scales as this projection saw them defined, for the zero totals of a
-- newly opened account (its own checkpoint: the balances projection's assets
-- table may be ahead or behind).
CREATE TABLE movement_assets (
    ledger   text     NOT NULL,
    code     text     NOT NULL,
    scale    smallint NOT NULL,
    PRIMARY KEY (ledger, code)
);

-- The ledger's clock: for each recorded time, the last position recorded at
-- or before it. recorded_at here is the running maximum of the events'
-- recorded times, so it never decreases with position even if a writer's
-- clock stepped back: "as of recorded time t" is the log up to the last
-- position whose (running) recorded time is <= t, one index probe.
-- A writer batch shares one recorded time: one row per batch, not per event.
CREATE TABLE movement_clock (
    ledger      text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    position    bigint      NOT NULL,
    PRIMARY KEY (ledger, recorded_at)
);
