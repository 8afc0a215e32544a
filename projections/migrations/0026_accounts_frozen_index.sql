-- Frozen accounts are few: ListAccounts' frozen filter reads this small
-- index in id order, as status=closed reads accounts_closed.
CREATE INDEX accounts_frozen ON accounts (ledger, account) WHERE frozen_position IS NOT NULL;
