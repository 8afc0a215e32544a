-- Alert and rule ids in byte order, whatever the database's locale, as the
-- account ids since 0018: the freezer reads the alerts of freezing rules in
-- (position, id) order, and the writer's AlertFreezeMark compares ids by
-- their bytes. Under a linguistic collation (an ICU locale) two alerts of
-- one position came in the other order: the first frozen moved the mark
-- past the second, whose freeze then answered EXISTS and never happened.
-- ListAlerts' order is audit verify's (byte order) again too.
--
-- A collation change keeps the rows and rebuilds the indexes on the
-- columns.
ALTER TABLE alerts ALTER COLUMN id TYPE text COLLATE "C", ALTER COLUMN rule_id TYPE text COLLATE "C";
ALTER TABLE alert_rules ALTER COLUMN rule_id TYPE text COLLATE "C";
