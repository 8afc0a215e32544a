-- An account's transfers are listed through its statement lines (movements,
-- whose primary key is the same account-then-position index), so the two
-- transfer_accounts rows each transfer cost (about 8 us of PostgreSQL CPU
-- and 2 of Go per transfer; docs/perf.md) are no longer written.
DROP TABLE transfer_accounts;
