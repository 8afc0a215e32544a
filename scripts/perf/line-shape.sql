-- line-shape.sql: what a statement line (keyed by numbers, as since
-- migration 0023) costs PostgreSQL by its shape, and by how its index is
-- built (docs/perf.md, "Session 24"). Run in a scratch database as the
-- superuser (COPY to and from files): mkdir -m 777 /tmp/cx, then
-- psql -d copyexp -f scripts/perf/line-shape.sql. It writes /tmp/cx/*.bin
-- (1,000,000 lines over 10,000 accounts, in position order as a projector
-- writes them) and COPYs each into a table of its shape; \timing prints each
-- statement's time. The COPYs run twice, in another order the second time.
DROP TABLE IF EXISTS src;
CREATE UNLOGGED TABLE src AS
SELECT 1::int AS ledger_no, (a*100+7)::bigint AS account_no, (g/2+1)::bigint AS position, (g%2)::smallint AS seq, 0 AS posting_index,
  CASE WHEN g%2=0 THEN 'debit' ELSE 'credit' END AS side, false AS pending, 'TransferCommitted'::text AS kind,
  'tx-' || lpad((g/2)::text, 10, '0') AS transfer_id, ARRAY['acct-' || lpad(((a*7)%10000)::text, 6, '0')] AS counter_accounts,
  (1 + g % 5000)::numeric / 100 AS amount, (g*13 % 1000000)::numeric/100 AS dp, (g*17 % 1000000)::numeric/100 AS cp, 0::numeric AS dq, 0::numeric AS cq,
  now() AS effective_at, now() AS recorded_at, NULL::text AS reference, NULL::jsonb AS metadata
FROM (SELECT g, (hashint4(g) & 2147483647) % 10000 AS a FROM generate_series(0, 999999) g) s;
COPY src (ledger_no, account_no, position, seq, posting_index, side, pending, kind, transfer_id, counter_accounts, amount, dp, cp, dq, cq, effective_at, recorded_at, reference, metadata) TO '/tmp/cx/full.bin' (FORMAT binary);
COPY src (ledger_no, account_no, position, seq, posting_index, side, pending, amount, dp, cp, dq, cq, effective_at, recorded_at) TO '/tmp/cx/slim.bin' (FORMAT binary);
COPY src (ledger_no, account_no, position, seq, posting_index, side, pending, amount, dp, cp, dq, cq) TO '/tmp/cx/slimmer.bin' (FORMAT binary);
\timing on
DROP TABLE IF EXISTS v_full, v_slim, v_slimmer;
CREATE TABLE v_full (ledger_no int NOT NULL, account_no bigint NOT NULL, position bigint NOT NULL, seq smallint NOT NULL, posting_index int NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL, kind text NOT NULL, transfer_id text NOT NULL, counter_accounts text[] NOT NULL,
 amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL, effective_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
 reference text, metadata jsonb, PRIMARY KEY (ledger_no, account_no, position, seq));
CREATE TABLE v_slim (ledger_no int NOT NULL, account_no bigint NOT NULL, position bigint NOT NULL, seq smallint NOT NULL, posting_index int NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL,
 amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL, effective_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
 PRIMARY KEY (ledger_no, account_no, position, seq));
CREATE TABLE v_slimmer (ledger_no int NOT NULL, account_no bigint NOT NULL, position bigint NOT NULL, seq smallint NOT NULL, posting_index int NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL,
 amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL,
 PRIMARY KEY (ledger_no, account_no, position, seq));
CHECKPOINT;
COPY v_full FROM '/tmp/cx/full.bin' (FORMAT binary);
COPY v_slim FROM '/tmp/cx/slim.bin' (FORMAT binary);
COPY v_slimmer FROM '/tmp/cx/slimmer.bin' (FORMAT binary);
TRUNCATE v_full, v_slim, v_slimmer;
CHECKPOINT;
COPY v_slim FROM '/tmp/cx/slim.bin' (FORMAT binary);
COPY v_full FROM '/tmp/cx/full.bin' (FORMAT binary);
COPY v_slimmer FROM '/tmp/cx/slimmer.bin' (FORMAT binary);
SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname LIKE 'v\_%' AND relkind='r';

-- The index built after the rows, against the rows into the index.
DROP TABLE IF EXISTS v_nopk;
CREATE TABLE v_nopk (LIKE v_full INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CHECKPOINT;
COPY v_nopk FROM '/tmp/cx/full.bin' (FORMAT binary);
ALTER TABLE v_nopk ADD PRIMARY KEY (ledger_no, account_no, position, seq);
TRUNCATE v_full;
CHECKPOINT;
COPY v_full FROM '/tmp/cx/full.bin' (FORMAT binary);

-- A build's lines through a table without an index, then inserted in key order under a
-- new, larger ledger number (at the index's right end), against inserted as they come.
TRUNCATE v_full; 
COPY v_full FROM '/tmp/cx/full.bin' (FORMAT binary);
DROP TABLE IF EXISTS side;
CREATE TABLE side (LIKE v_full INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CHECKPOINT;
-- (a) the shadow's lines straight in, a new larger ledger number, random order per account as a rebuild writes
COPY side FROM '/tmp/cx/full.bin' (FORMAT binary);
UPDATE side SET ledger_no = 2;
CHECKPOINT;
INSERT INTO v_full SELECT * FROM side;
DELETE FROM v_full WHERE ledger_no = 2;
VACUUM v_full;
CHECKPOINT;
-- (b) through the side table in key order
INSERT INTO v_full SELECT * FROM side ORDER BY ledger_no, account_no, position, seq;
