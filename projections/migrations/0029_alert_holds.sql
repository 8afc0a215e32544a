-- The hold action of monitoring rules (RULE_ACTION_HOLD): an alert of a
-- rule that holds the triggering amount names the account it is held
-- towards, for ledgerd's alerter, which places the hold right after the
-- alert's AlertRaised. No backfill: no rule held anything before.
ALTER TABLE alerts ADD COLUMN hold_account text COLLATE "C" NOT NULL DEFAULT '';
