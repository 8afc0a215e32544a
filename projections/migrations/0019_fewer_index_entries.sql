-- Fewer index entries per transfer (docs/perf.md, "Fewer rows per transfer"):
-- every entry is a B-tree descent and a WAL record on the hot path.
--
-- movements_effective_at: each statement line's second index. What reads on
-- effective time (value-dated statements, balances as of an effective time,
-- category roll-ups) reads one account's lines, which the primary key
-- (ledger, account, position, seq) gives in order; the effective time is a
-- filter on them. The index spared reading an account's lines effective after
-- the time asked, and cost every line written an entry.
DROP INDEX IF EXISTS movements_effective_at;

-- transfers_status: almost every transfer is 'posted', and a listing of posted
-- transfers is the listing in position order (transfers_position) filtered.
-- The index keeps the others: holds, voided, expired, reversed. Queries name
-- the status as a literal so that the planner can prove the predicate.
DROP INDEX IF EXISTS transfers_status;
CREATE INDEX transfers_status ON transfers (ledger, status, position) WHERE status <> 'posted';
