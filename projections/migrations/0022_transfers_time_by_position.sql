-- Transfers found by time through their positions (docs/perf.md, session
-- 12): the indexes on recorded_at and effective_at cost every transfer two
-- index entries, a quarter of its row's cost.
--
-- Recorded time never goes back with position (the writer and imports
-- refuse it), so a recorded-time range is a position range, which the
-- statement lines' clock (movement_clock) gives; a query filters the rows of
-- that range on the time exactly.
--
-- Effective time is the recorded time for a transfer that names none, and
-- near it for most that do (a client's own clock). A transfer whose
-- effective time is more than five minutes (projections.EffectiveNear) from
-- its recorded time is effective_far, and only those keep an index on
-- effective time; the others are found through the recorded-time range
-- widened by five minutes each side. effective_far is PostgreSQL's to
-- compute, so that a row written by any ledgerd (an older one still running
-- during an upgrade included) has it right; adding it rewrites the table
-- once.
ALTER TABLE transfers ADD COLUMN effective_far boolean NOT NULL
    GENERATED ALWAYS AS (abs(extract(epoch FROM effective_at - recorded_at)) > 300) STORED;
DROP INDEX IF EXISTS transfers_recorded_at;
DROP INDEX IF EXISTS transfers_effective_at;
CREATE INDEX transfers_effective_far ON transfers (ledger, effective_at, position) WHERE effective_far;
