-- Each checkpoint keeps the hash of the last event its projection applied:
-- a runner refuses a batch whose first event does not continue it (a
-- forged or replayed event, a log restored to an earlier state). NULL: a
-- checkpoint from before this column; the runner takes the log's hash at
-- that position the first time.
ALTER TABLE projection_checkpoints ADD COLUMN hash bytea;
