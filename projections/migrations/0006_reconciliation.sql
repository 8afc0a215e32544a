-- The reconciliation projection: each reconciled account's external lines
-- (StatementImported) and ledger movements, the matches between them, and
-- the daily journal (control totals). Matching is the projector's, a pure
-- function of the log in position order: a rebuild makes the same matches.

-- An account is reconciled from its first statement line or rules on; its
-- movements before that are taken from the movements projection, once.
CREATE TABLE recon_accounts (
    ledger           text     NOT NULL,
    account          text     NOT NULL,
    asset            text     NOT NULL,
    scale            smallint NOT NULL,
    normal_balance   text     NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    -- The rules as the log has them (MatchingRule JSON); NULL: the default.
    rules            jsonb,
    enabled_position bigint   NOT NULL,
    PRIMARY KEY (ledger, account)
);

-- Amounts are signed: positive raises the balance (the statement's for a
-- line, the account's for a movement). match_id is NULL while unmatched;
-- manual_only items (after an Unmatch) are left out of automatic matching.
CREATE TABLE recon_lines (
    ledger      text    NOT NULL,
    account     text    NOT NULL,
    source      text    NOT NULL,
    external_id text    NOT NULL,
    position    bigint  NOT NULL,
    amount      numeric NOT NULL,
    value_date  date    NOT NULL,
    reference   text    NOT NULL,
    description text    NOT NULL,
    match_id    text,
    manual_only boolean NOT NULL,
    PRIMARY KEY (ledger, account, source, external_id)
);
CREATE INDEX recon_lines_date ON recon_lines (ledger, account, value_date);
CREATE INDEX recon_lines_open ON recon_lines (ledger, account, position) WHERE match_id IS NULL;
CREATE INDEX recon_lines_match ON recon_lines (ledger, account, match_id) WHERE match_id IS NOT NULL;

CREATE TABLE recon_movements (
    ledger         text    NOT NULL,
    account        text    NOT NULL,
    transfer_id    text    NOT NULL,
    posting_index  int     NOT NULL,
    position       bigint  NOT NULL,
    amount         numeric NOT NULL,
    effective_date date    NOT NULL,
    reference      text    NOT NULL,
    match_id       text,
    manual_only    boolean NOT NULL,
    PRIMARY KEY (ledger, account, transfer_id, posting_index)
);
CREATE INDEX recon_movements_date ON recon_movements (ledger, account, effective_date);
CREATE INDEX recon_movements_open ON recon_movements (ledger, account, position) WHERE match_id IS NULL;
CREATE INDEX recon_movements_match ON recon_movements (ledger, account, match_id) WHERE match_id IS NOT NULL;

-- A match: lines and movements sharing match_id. Automatic ids are
-- '#<position>.<n>' (no client id has '#'); manual ones are the client's.
CREATE TABLE recon_matches (
    ledger     text    NOT NULL,
    account    text    NOT NULL,
    match_id   text    NOT NULL,
    rule       text    NOT NULL,
    reason     text    NOT NULL,
    position   bigint  NOT NULL,
    -- The earliest value date of its lines: the period it belongs to.
    day        date    NOT NULL,
    -- Σ lines - Σ movements.
    difference numeric NOT NULL,
    lines      int     NOT NULL,
    movements  int     NOT NULL,
    PRIMARY KEY (ledger, account, match_id)
);
CREATE INDEX recon_matches_day ON recon_matches (ledger, account, day);

-- Control totals: per asset and effective day (UTC), the posted postings and
-- their sum. Every posting adds its amount to debits and to credits alike,
-- so the sums over all days are the trial balance's posted totals.
CREATE TABLE recon_journal (
    ledger   text    NOT NULL,
    asset    text    NOT NULL,
    day      date    NOT NULL,
    postings bigint  NOT NULL,
    amount   numeric NOT NULL,
    PRIMARY KEY (ledger, asset, day)
);

DO $$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        FOREACH t IN ARRAY ARRAY['recon_accounts', 'recon_lines', 'recon_movements', 'recon_matches', 'recon_journal'] LOOP
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ledger_app', t);
        END LOOP;
    END IF;
END
$$;
