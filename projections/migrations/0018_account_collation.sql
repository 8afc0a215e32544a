-- Account ids (and category names) in byte order, whatever the database's
-- locale: every read-model column holding one is COLLATE "C", as the
-- accounts table's has been since 0015. Listings (id order), prefixes and
-- categories' patterns are ranges of these keys (account >= p AND account <
-- p'), which hold exactly the ids starting with p only in byte order; under
-- a linguistic collation (en_US.UTF-8, an ICU locale) such a range misses
-- ids. Before this, ledgerd refused such a database instead.
--
-- A collation change keeps the rows (text to text is binary-coercible) and
-- rebuilds the indexes on the column: on a large read model this migration
-- takes as long as building those indexes.
ALTER TABLE balances ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE movements ALTER COLUMN account TYPE text COLLATE "C",
    ALTER COLUMN counter_accounts TYPE text[] COLLATE "C";
ALTER TABLE movement_heads ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE recon_accounts ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE recon_lines ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE recon_movements ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE recon_matches ALTER COLUMN account TYPE text COLLATE "C";
ALTER TABLE categories ALTER COLUMN name TYPE text COLLATE "C", ALTER COLUMN parent TYPE text COLLATE "C";
ALTER TABLE alerts ALTER COLUMN account TYPE text COLLATE "C";
