-- copy-rows.sql: what a statement line costs PostgreSQL by its shape (docs/perf.md,
-- "Session 15"). Run in a scratch database with the C collation, as the
-- superuser (COPY to and from files): psql -d copyexp -f scripts/perf/copy-rows.sql.
-- It writes /tmp/cx/*.bin (700,000 lines over 10,000 accounts), then COPYs each
-- file into a table of its shape; \timing prints each COPY's time. First: mkdir -m 777 /tmp/cx.
DROP TABLE IF EXISTS src;
CREATE UNLOGGED TABLE src AS
SELECT 'bench'::text AS ledger, 'acct-' || lpad((a)::text, 6, '0') AS account, (g/2+1)::bigint AS position, (g%2)::smallint AS seq, 0 AS posting_index,
  CASE WHEN g%2=0 THEN 'debit' ELSE 'credit' END AS side, false AS pending, 'TransferCommitted'::text AS kind,
  'tx-' || lpad((g/2)::text, 10, '0') AS transfer_id, ARRAY['acct-' || lpad(((a*7)%10000)::text, 6, '0')] AS counter_accounts,
  (1 + g % 5000)::numeric / 100 AS amount, (g*13 % 1000000)::numeric/100 AS dp, (g*17 % 1000000)::numeric/100 AS cp, 0::numeric AS dq, 0::numeric AS cq,
  now() AS effective_at, now() AS recorded_at, NULL::text AS reference, NULL::jsonb AS metadata, a AS account_id
FROM (SELECT g, (hashint4(g) & 2147483647) % 10000 AS a FROM generate_series(0, 699999) g) s;
COPY src (ledger, account, position, seq, posting_index, side, pending, kind, transfer_id, counter_accounts, amount, dp, cp, dq, cq, effective_at, recorded_at, reference, metadata) TO '/tmp/cx/full.bin' (FORMAT binary);
COPY src (ledger, account, position, seq, side, pending, amount, dp, cp, dq, cq) TO '/tmp/cx/slim.bin' (FORMAT binary);
COPY (SELECT 1::int, account_id::int, position, seq, side = 'debit', pending, amount, dp, cp, dq, cq FROM src) TO '/tmp/cx/slimint.bin' (FORMAT binary);
COPY (SELECT ledger, account, position, seq, side, pending, amount, dp, cp, dq, cq, transfer_id FROM src) TO '/tmp/cx/slimid.bin' (FORMAT binary);
\timing on
DROP TABLE IF EXISTS v_full, v_slim, v_slimint, v_slimid, v_fullnopk;
CREATE TABLE v_full (ledger text NOT NULL, account text NOT NULL, position bigint NOT NULL, seq smallint NOT NULL, posting_index int NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL, kind text NOT NULL, transfer_id text NOT NULL, counter_accounts text[] NOT NULL,
 amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL, effective_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
 reference text, metadata jsonb, PRIMARY KEY (ledger, account, position, seq));
CREATE TABLE v_fullnopk (LIKE v_full INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TABLE v_slim (ledger text NOT NULL, account text NOT NULL, position bigint NOT NULL, seq smallint NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL, amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL,
 PRIMARY KEY (ledger, account, position, seq));
CREATE TABLE v_slimid (ledger text NOT NULL, account text NOT NULL, position bigint NOT NULL, seq smallint NOT NULL,
 side text NOT NULL CHECK (side IN ('debit','credit')), pending boolean NOT NULL, amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL,
 transfer_id text NOT NULL, PRIMARY KEY (ledger, account, position, seq));
CREATE TABLE v_slimint (ledger int NOT NULL, account int NOT NULL, position bigint NOT NULL, seq smallint NOT NULL,
 debit boolean NOT NULL, pending boolean NOT NULL, amount numeric NOT NULL, dp numeric NOT NULL, cp numeric NOT NULL, dq numeric NOT NULL, cq numeric NOT NULL,
 PRIMARY KEY (ledger, account, position, seq));
CHECKPOINT;
COPY v_fullnopk FROM '/tmp/cx/full.bin' (FORMAT binary);
COPY v_full FROM '/tmp/cx/full.bin' (FORMAT binary);
COPY v_slim FROM '/tmp/cx/slim.bin' (FORMAT binary);
COPY v_slimid FROM '/tmp/cx/slimid.bin' (FORMAT binary);
COPY v_slimint FROM '/tmp/cx/slimint.bin' (FORMAT binary);
SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relname LIKE 'v\_%' AND relkind='r';
