-- copy-order.sql: what the order of a batch's statement lines costs
-- PostgreSQL (docs/perf.md, "Session 17"). In a scratch database:
-- psql -d copyorder -f scripts/perf/copy-order.sql. A table shaped like
-- movements holds 700,000 lines over 10,000 accounts; 700,000 more are
-- inserted in batches of 2,000 (1,000 transfers), each in its own
-- transaction, in position order (as the projector made them) or in key
-- order. \timing prints each variant's time. A rebuild's batches (16,000
-- lines): loop over 0..43 in steps of 8,000 positions instead.
DROP TABLE IF EXISTS src, base, t_pos, t_key;
CREATE TABLE src AS
SELECT 1 AS ledger_no, ((hashint4(g) & 2147483647) % 10000)::bigint AS account_no, (g/2+1)::bigint AS position, (g%2)::smallint AS seq,
  0 AS posting_index, CASE WHEN g%2=0 THEN 'debit' ELSE 'credit' END AS side, false AS pending, 'transfer'::text AS kind,
  't-' || g/2 AS transfer_id, ARRAY['acct-' || (g*7)%10000] AS counter_accounts,
  (1 + g % 5000)::numeric / 100 AS amount, (g*13 % 1000000)::numeric/100 AS dp, (g*17 % 1000000)::numeric/100 AS cp, 0::numeric AS dq, 0::numeric AS cq,
  now() AS effective_at, now() AS recorded_at, NULL::text AS reference, NULL::jsonb AS metadata
FROM generate_series(0, 1399999) g;
CREATE INDEX ON src (position);
CREATE TABLE base (LIKE src);
ALTER TABLE base ADD PRIMARY KEY (ledger_no, account_no, position, seq);
INSERT INTO base SELECT * FROM src WHERE position <= 350000 ORDER BY position, seq;
CREATE TABLE t_pos (LIKE base INCLUDING ALL);
CREATE TABLE t_key (LIKE base INCLUDING ALL);
INSERT INTO t_pos SELECT * FROM base;
INSERT INTO t_key SELECT * FROM base;
VACUUM ANALYZE t_pos, t_key;
CHECKPOINT;
\timing on
DO $$ BEGIN FOR b IN 0..349 LOOP
  INSERT INTO t_pos SELECT * FROM src WHERE position > 350000 + b*1000 AND position <= 351000 + b*1000 ORDER BY position, seq;
  COMMIT;
END LOOP; END $$;
CHECKPOINT;
DO $$ BEGIN FOR b IN 0..349 LOOP
  INSERT INTO t_key SELECT * FROM src WHERE position > 350000 + b*1000 AND position <= 351000 + b*1000 ORDER BY account_no, position, seq;
  COMMIT;
END LOOP; END $$;
\timing off
SELECT relname, pg_size_pretty(pg_relation_size(indexrelid)) AS pkey FROM pg_stat_user_indexes WHERE relname IN ('t_pos', 't_key');
