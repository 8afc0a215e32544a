-- Every transfer, hold, post, void and reversal of a ledger, one row each,
-- with where it stands now: a hold's state and what it still holds, a posted
-- transfer's reversals. Rows are inserted once and updated only by the events
-- that resolve or reverse them.
CREATE TABLE transfers (
    ledger           text        NOT NULL,
    id               text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('transfer', 'pending', 'post', 'void', 'reversal')),
    status           text        NOT NULL CHECK (status IN ('posted', 'pending', 'pending_posted', 'voided',
                                                            'expired', 'reversed', 'partially_reversed')),
    -- Position of the event that created the row: unique per ledger, the
    -- order of listings and what their cursors hold.
    position         bigint      NOT NULL,
    -- [{"debit","credit","asset","amount","remaining" (holds),"reversed"
    -- (transfers and posts)}], amounts as decimal strings at the asset's scale.
    postings         jsonb       NOT NULL,
    reference        text,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    effective_at     timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    -- A post or void: the hold it resolves. A hold: the post or void that
    -- resolved it (none when it expired).
    pending_id       text,
    resolved_by      text,
    -- A reversal: the transfer it reverses. A transfer or post: its reversals,
    -- in position order.
    reverses         text,
    reversed_by      text[]      NOT NULL DEFAULT '{}',
    expires_at       timestamptz,
    -- Position of the last event that changed the row.
    updated_position bigint      NOT NULL,
    PRIMARY KEY (ledger, id)
) WITH (fillfactor = 90); -- holds and reversed transfers are updated once or a few times: room for HOT updates

CREATE UNIQUE INDEX transfers_position ON transfers (ledger, position);
CREATE INDEX transfers_reference ON transfers (ledger, reference, position) WHERE reference IS NOT NULL;
-- jsonb_ops answers both "has key" (?) and "has key and value" (@>).
CREATE INDEX transfers_metadata ON transfers USING gin (metadata);
CREATE INDEX transfers_status ON transfers (ledger, status, position);
CREATE INDEX transfers_recorded_at ON transfers (ledger, recorded_at, position);
CREATE INDEX transfers_effective_at ON transfers (ledger, effective_at, position);

-- The accounts each transfer row has a posting on: the account filter, in
-- position order.
CREATE TABLE transfer_accounts (
    ledger   text   NOT NULL,
    account  text   NOT NULL,
    position bigint NOT NULL,
    id       text   NOT NULL,
    PRIMARY KEY (ledger, account, position)
);
