-- movement_heads keeps what never changes of an account (asset, scale,
-- normal side, where it was opened). Its running totals were updated for
-- every moved account in every batch; they are the account's last line's, so
-- the projector now reads them from movements (one backward step on the
-- primary key) and the row is written once, at the opening.
ALTER TABLE movement_heads
    DROP COLUMN debits_posted,
    DROP COLUMN credits_posted,
    DROP COLUMN debits_pending,
    DROP COLUMN credits_pending,
    DROP COLUMN position;
ALTER TABLE movement_heads SET (fillfactor = 100);
