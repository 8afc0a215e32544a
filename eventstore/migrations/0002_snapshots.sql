-- Snapshots of a writer's state: where a writer starts, folding only the log
-- after them. Unlike events, they are not append-only: a snapshot is a cache
-- of the log, and only the newest few per ledger are kept (SnapshotsKept).
CREATE TABLE snapshots (
    ledger         text        NOT NULL,
    -- The position of the last event folded into the state.
    position       bigint      NOT NULL CHECK (position > 0),
    -- The chain hash of the event at position: a loader checks it against
    -- the log, so that a snapshot of another history is never used.
    hash           bytea       NOT NULL CHECK (length(hash) = 32),
    format_version integer     NOT NULL,
    -- The SHA-256 the encoding ends with: the data can be checked, or
    -- snapshots compared, without decoding them.
    checksum       bytea       NOT NULL CHECK (length(checksum) = 32),
    data           bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger, position)
);

-- Out of line and uncompressed: the data is mostly hashes, which pglz would
-- only spend time on.
ALTER TABLE snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
