-- The ledger's clock keeps a point per millisecond of recorded time
-- (projections.ClockGrain) rather than per distinct recorded time: max_at is
-- the exact running maximum of the recorded times at the point's position,
-- so that a look-up starts from the last point at or before the time asked
-- and reads only the log's events after it within one grain. Points written
-- before this migration have recorded_at exact, and no max_at.
ALTER TABLE movement_clock ADD COLUMN IF NOT EXISTS max_at timestamptz;
