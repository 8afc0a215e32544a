-- The ledgerd processes sharing this database, and which of them writes and
-- projects each ledger (docs/operations.md, "Scaling out").
--
-- ledgerd_nodes: one row a process, kept fresh by its heartbeat (seen_at).
-- A row whose seen_at is old belongs to a process that stopped or died; an
-- operator drains a node by setting draining (AdminService.DrainNode), which
-- the node reads at its next heartbeat.
CREATE TABLE ledgerd_nodes (
    id         text        PRIMARY KEY,
    roles      text[]      NOT NULL,
    grpc_addr  text        NOT NULL,
    http_addr  text        NOT NULL,
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    version    text        NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    draining   boolean     NOT NULL DEFAULT false
);

-- ledger_placements: who took a ledger's writer or projector lease, and when.
-- The lease itself is an advisory lock held by backend_pid (eventstore.Lease,
-- eventstore.Locks): a row is current only while pg_locks shows that backend
-- holding the ledger's lock, so a holder that died leaves a row that readers
-- ignore and the next holder overwrites.
CREATE TABLE ledger_placements (
    ledger      text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('writer', 'projector')),
    node        text        NOT NULL,
    backend_pid integer     NOT NULL,
    acquired_at timestamptz NOT NULL,
    PRIMARY KEY (ledger, role)
);

DO $$
DECLARE
    r text;
BEGIN
    -- Every process registers itself, whatever its logins: a query node may
    -- hold only a reader's. The rows say where processes run, nothing more.
    FOREACH r IN ARRAY ARRAY['ledger_writer', 'ledger_projector', 'ledger_reader', 'ledger_app'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ledgerd_nodes TO %I', r);
            EXECUTE format('GRANT SELECT ON ledger_placements TO %I', r);
        END IF;
    END LOOP;
    FOREACH r IN ARRAY ARRAY['ledger_writer', 'ledger_projector', 'ledger_app'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('GRANT INSERT, UPDATE ON ledger_placements TO %I', r);
        END IF;
    END LOOP;
END
$$;
