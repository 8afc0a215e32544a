-- The alerts of monitoring rules, kept by the alerts projector (one row per
-- alert: <ledger>:<position>:<rule>:<account>, raised by domain.Evaluator
-- from the log alone, so a rebuild writes the same rows), and the rules it
-- has seen defined (alert_rules: whether a ledger has any, so a ledger
-- without rules costs a check of event types per batch and nothing more).
-- ListAlerts reads by position, by rule or by account, each behind an index.
-- No backfill: no log written before this migration holds a RuleDefined.
CREATE TABLE alerts (
    ledger         text        NOT NULL,
    position       bigint      NOT NULL,
    id             text        NOT NULL,
    rule_id        text        NOT NULL,
    rule_version   integer     NOT NULL,
    transfer_id    text        NOT NULL,
    account        text        NOT NULL,
    counterparties text[]      NOT NULL,
    asset          text        NOT NULL,
    figures        jsonb       NOT NULL,
    freezes        boolean     NOT NULL,
    recorded_at    timestamptz NOT NULL,
    effective_at   timestamptz,
    PRIMARY KEY (ledger, position, id)
);
CREATE INDEX alerts_by_rule ON alerts (ledger, rule_id, position, id);
CREATE INDEX alerts_by_account ON alerts (ledger, account, position, id);
-- The freezer's reads: the alerts of rules with the freeze action, after
-- the ledger's last one acted on.
CREATE INDEX alerts_freezing ON alerts (ledger, position, id) WHERE freezes;

CREATE TABLE alert_rules (
    ledger   text    NOT NULL,
    rule_id  text    NOT NULL,
    version  integer NOT NULL,
    position bigint  NOT NULL,
    PRIMARY KEY (ledger, rule_id)
);

-- Grants as 0016_categories.sql.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_projector')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON alerts, alert_rules TO ledger_projector;
        GRANT SELECT ON alerts, alert_rules TO ledger_reader;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')
           AND NOT (pg_has_role('ledger_app', 'ledger_projector', 'MEMBER') AND pg_has_role('ledger_app', 'ledger_reader', 'MEMBER')) THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON alerts, alert_rules TO ledger_app;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON alerts, alert_rules TO ledger_app;
    END IF;
END
$$;
