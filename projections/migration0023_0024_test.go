package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// Tests of migrations 0023 (statement lines keyed by the ledger key's number
// and the account's opening position) and 0024 (transfers keyed by the
// ledger key's number), and of what the numbers ask of a rebuild's swap.

// backBeforeNumberedLines puts the statement lines back as they stood before
// migration 0023, every key's: keyed by ledger and account, the heads
// without their ledger number, no movement_ledgers; and 0023 is pending.
func (e *env) backBeforeNumberedLines() {
	t := e.t
	t.Helper()
	testenv.NoError(t, pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
		return execEach(t.Context(), tx,
			`CREATE TABLE movements_keyed_by_text (
				ledger text NOT NULL, account text COLLATE "C" NOT NULL, position bigint NOT NULL, seq smallint NOT NULL,
				posting_index int NOT NULL, side text NOT NULL CHECK (side IN ('debit', 'credit')), pending boolean NOT NULL,
				kind text NOT NULL, transfer_id text NOT NULL, counter_accounts text[] COLLATE "C" NOT NULL,
				amount numeric NOT NULL, debits_posted numeric NOT NULL, credits_posted numeric NOT NULL,
				debits_pending numeric NOT NULL, credits_pending numeric NOT NULL,
				effective_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL, reference text, metadata jsonb)`,
			`INSERT INTO movements_keyed_by_text SELECT * FROM movement_lines`,
			`DROP VIEW movement_lines`,
			`DROP TABLE movements`,
			`ALTER TABLE movements_keyed_by_text RENAME TO movements`,
			`ALTER TABLE movements ADD CONSTRAINT movements_pkey PRIMARY KEY (ledger, account, position, seq)`,
			`ALTER TABLE movement_heads DROP COLUMN ledger_no`,
			`DROP TABLE movement_ledgers`,
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0023_lines_keyed_by_numbers.sql'`,
		)
	}))
}

// TestNumberedLinesMigration: migration 0023 keeps every statement line and
// head of every key (a live ledger and a rebuild's interrupted shadow), as
// the view movement_lines shows them, under its head's numbers; the live
// projector goes on from there to the rows of a build from scratch, and a
// rebuild resumes the shadow and swaps it in, leaving no line of a retired
// number.
func TestNumberedLinesMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	lower := e.runWorkload(60, 23)
	more := make([]domain.Command, 5)
	for i := range more {
		more[i] = &domain.CreateTransfer{ID: fmt.Sprintf("more-%d", i), Postings: []domain.PostingInput{
			{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "1.00"}}}
	}
	e.submit(more)
	head, _, err := e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	shadow := e.ledger + projections.ShadowSuffix
	e.buildTo(projections.NewMovements(), e.ledger, head)
	e.buildTo(projections.NewMovements(), shadow, lower)
	want, wantShadow := e.rows(projections.NewMovements(), e.ledger), e.rows(projections.NewMovements(), shadow)
	if len(want["movement_lines"]) == 0 || len(wantShadow["movement_lines"]) == 0 {
		t.Fatalf("%d live and %d shadow lines: the test needs both", len(want["movement_lines"]), len(wantShadow["movement_lines"]))
	}
	e.backBeforeNumberedLines()

	testenv.NoError(t, projections.Migrate(ctx, e.pool))

	t.Run("schema", func(t *testing.T) {
		var key []string
		testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT array_agg(a.attname::text ORDER BY k.n)
			FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n), pg_attribute a
			WHERE i.indrelid = 'movements'::regclass AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum`).Scan(&key))
		if w := []string{"ledger_no", "account_no", "position", "seq"}; !slices.Equal(key, w) {
			t.Errorf("movements' primary key %v, want %v", key, w)
		}
	})
	t.Run("rows kept", func(t *testing.T) {
		if diff := cmp.Diff(want, e.rows(projections.NewMovements(), e.ledger)); diff != "" {
			t.Errorf("live rows after 0023 (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(wantShadow, e.rows(projections.NewMovements(), shadow)); diff != "" {
			t.Errorf("shadow rows after 0023 (-before +after):\n%s", diff)
		}
		var keys int
		testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT count(DISTINCT ledger_no) FROM movements`).Scan(&keys))
		if keys != 2 {
			t.Errorf("lines under %d ledger numbers, want 2 (the ledger's and the shadow's)", keys)
		}
	})
	e.checkAt(head)
	if t.Failed() {
		return
	}

	t.Log("the live projector goes on; a rebuild resumes the shadow and swaps it in")
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "after", Postings: []domain.PostingInput{
		{Debit: accountID("USD", 1), Credit: accountID("USD", 2), Asset: "USD", Amount: "2.00"}}}})
	head, _, err = e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	e.buildTo(projections.NewMovements(), e.ledger, head)
	ref := e.ledger + "~ref"
	e.buildTo(projections.NewMovements(), ref, head)
	if diff := cmp.Diff(e.rows(projections.NewMovements(), ref), e.rows(projections.NewMovements(), e.ledger)); diff != "" {
		t.Fatalf("movements gone on from the migration (-from scratch +migrated):\n%s", diff)
	}
	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(ctx,
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("rebuild swapped at %d, want the head %d", at, head)
	}
	if diff := cmp.Diff(e.rows(projections.NewMovements(), ref), e.rows(projections.NewMovements(), e.ledger)); diff != "" {
		t.Errorf("movements rebuilt (-from scratch +rebuilt):\n%s", diff)
	}
	e.checkNoOrphanLines()
	e.checkAt(head)
}

// TestNumberedLinesMigrationRefusesAHeadlessLine: a statement line whose
// account has no head is a corrupt read model; 0023 stops on it and changes
// nothing.
func TestNumberedLinesMigrationRefusesAHeadlessLine(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	head := e.runWorkload(10, 5)
	e.buildTo(projections.NewMovements(), e.ledger, head)
	e.backBeforeNumberedLines()
	tag, err := e.pool.Exec(ctx, `DELETE FROM movement_heads WHERE ledger = $1 AND account = $2`, e.ledger, accountID("USD", 0))
	testenv.NoError(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("deleted %d heads, want 1", tag.RowsAffected())
	}
	err = projections.Migrate(ctx, e.pool)
	if err == nil || !strings.Contains(err.Error(), "the read model is corrupt") {
		t.Fatalf("migrated a line without a head: %v", err)
	}
	var keyedByText bool
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'movements' AND column_name = 'account')`).Scan(&keyedByText))
	if !keyedByText {
		t.Error("the failed migration changed the lines' table")
	}
}

// TestSwapRenumbersUnderACachedProjector: a rebuild's swap gives the ledger
// the shadow's number while the live projector holds the old one in its
// cache, valid by position (the swap left the checkpoint where it was). Its
// next batch must not write lines under the retired number: it rolls back,
// reloads and writes them under the new one.
func TestSwapRenumbersUnderACachedProjector(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	head := e.runWorkload(30, 7)
	live := projections.NewMovements()
	e.buildTo(live, e.ledger, head)
	var before int32
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, e.ledger).Scan(&before))

	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(ctx,
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("rebuild swapped at %d, want %d (level with the live checkpoint, which then stays)", at, head)
	}
	var after int32
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, e.ledger).Scan(&after))
	if after == before {
		t.Fatalf("the swap kept the ledger's number %d: the test needs it to change", before)
	}

	// A transfer and an account opened: lines and a head, under the new
	// number.
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "after-swap", Postings: []domain.PostingInput{
		{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "3.00"}}},
		&domain.OpenAccount{ID: "opened-after-swap", Asset: "USD", Normal: domain.SideCredit}})
	head, _, err = e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	e.buildTo(live, e.ledger, head) // the same projector: its cache continues at the checkpoint
	e.checkNoOrphanLines()
	e.checkAt(head)
	ref := e.ledger + "~ref"
	e.buildTo(projections.NewMovements(), ref, head)
	if diff := cmp.Diff(e.rows(projections.NewMovements(), ref), e.rows(projections.NewMovements(), e.ledger)); diff != "" {
		t.Errorf("movements after the swap (-from scratch +live):\n%s", diff)
	}
}

// TestRebuildDropsAStaleShadowsLines: a shadow left by another version of
// the projector is dropped before a rebuild starts afresh, its statement
// lines with it (they are keyed by the shadow's number, not by its name:
// the number is retired, and the sweep deletes its lines).
func TestRebuildDropsAStaleShadowsLines(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	head := e.runWorkload(20, 11)
	shadow := e.ledger + projections.ShadowSuffix
	e.buildTo(projections.NewMovements(), e.ledger, head)
	e.buildTo(projections.NewMovements(), shadow, head-3)
	var stale int32
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, shadow).Scan(&stale))
	_, err := e.pool.Exec(ctx, `UPDATE projection_checkpoints SET version = version - 1 WHERE ledger = $1 AND projection = 'movements'`, shadow)
	testenv.NoError(t, err)

	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(ctx,
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("rebuild swapped at %d, want %d", at, head)
	}
	// The stale number is retired by the rebuild and its lines deleted by
	// the sweep that follows (workflows.Rebuilds sweeps after each).
	var key string
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT ledger FROM movement_ledgers WHERE ledger_no = $1`, stale).Scan(&key))
	if !strings.HasPrefix(key, projections.RetiredPrefix) {
		t.Errorf("the stale shadow's number %d is %q's after the rebuild, want retired", stale, key)
	}
	_, err = projections.SweepRetired(ctx, e.pool)
	testenv.NoError(t, err)
	var left int
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM movements WHERE ledger_no = $1`, stale).Scan(&left))
	if left != 0 {
		t.Errorf("%d lines of the stale shadow's number %d left", left, stale)
	}
	e.checkNoOrphanLines()
	e.checkAt(head)
}

// TestNumberedLinesMigrationLeavesEmptyTablesUnanalyzed: on a new database
// 0023 and 0024 record no statistics of their empty tables. Zero rows recorded made
// the planner's choices for statement and balance reads under load 50 times
// slower until autovacuum analyzed the tables again (docs/perf.md, session
// 16); a table never analyzed is estimated from its size.
func TestNumberedLinesMigrationLeavesEmptyTablesUnanalyzed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rows, err := e.pool.Query(t.Context(), `SELECT relname::text FROM pg_class
		WHERE relname IN ('movements', 'movement_heads', 'movement_ledgers', 'transfers', 'transfer_ledgers')
			AND relkind = 'r' AND reltuples >= 0`)
	testenv.NoError(t, err)
	analyzed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	if len(analyzed) != 0 {
		t.Errorf("%v analyzed while empty", analyzed)
	}
}

// backBeforeNumberedTransfers puts the transfers back as they stood before
// migration 0024, every key's: keyed by ledger, no transfer_ledgers; and
// 0024 is pending.
func (e *env) backBeforeNumberedTransfers() {
	t := e.t
	t.Helper()
	testenv.NoError(t, pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
		return execEach(t.Context(), tx,
			`CREATE TABLE transfers_keyed_by_text (
				ledger text NOT NULL, id text NOT NULL,
				kind text NOT NULL CHECK (kind IN ('transfer', 'pending', 'post', 'void', 'reversal')),
				status text NOT NULL CHECK (status IN ('posted', 'pending', 'pending_posted', 'voided', 'expired', 'reversed',
					'partially_reversed')),
				position bigint NOT NULL, postings jsonb NOT NULL, reference text, metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
				effective_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL, pending_id text, resolved_by text,
				reverses text, reversed_by text[] NOT NULL DEFAULT '{}'::text[], expires_at timestamptz,
				updated_position bigint NOT NULL,
				effective_far boolean NOT NULL GENERATED ALWAYS AS (abs(extract(epoch FROM effective_at - recorded_at)) > 300) STORED)
				WITH (fillfactor = 90)`,
			`INSERT INTO transfers_keyed_by_text (ledger, id, kind, status, position, postings, reference, metadata, effective_at,
				recorded_at, pending_id, resolved_by, reverses, reversed_by, expires_at, updated_position)
			SELECT ledger, id, kind, status, position, postings, reference, metadata, effective_at,
				recorded_at, pending_id, resolved_by, reverses, reversed_by, expires_at, updated_position FROM transfer_rows`,
			`DROP VIEW transfer_rows`,
			`DROP TABLE transfers`,
			`ALTER TABLE transfers_keyed_by_text RENAME TO transfers`,
			`ALTER TABLE transfers ADD CONSTRAINT transfers_pkey PRIMARY KEY (ledger, id)`,
			`CREATE UNIQUE INDEX transfers_position ON transfers (ledger, position)`,
			`CREATE INDEX transfers_reference ON transfers (ledger, reference, position) WHERE reference IS NOT NULL`,
			`CREATE INDEX transfers_metadata ON transfers USING gin (metadata) WHERE metadata <> '{}'::jsonb`,
			`CREATE INDEX transfers_status ON transfers (ledger, status, position) WHERE status <> 'posted'`,
			`CREATE INDEX transfers_effective_far ON transfers (ledger, effective_at, position) WHERE effective_far`,
			`DROP TABLE transfer_ledgers`,
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0024_transfers_keyed_by_numbers.sql'`,
			// The postings were jsonb then: 0027 makes them json again.
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0027_transfers_postings_json.sql'`,
			// Nor had they an alert: 0030 adds it.
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0030_transfers_alert.sql'`,
		)
	}))
}

// TestNumberedTransfersMigration: migration 0024 keeps every transfer of
// every key (a live ledger and a rebuild's interrupted shadow), as the view
// transfer_rows shows them, under its key's number; the projector goes on
// from there to the rows of a build from scratch, and a rebuild resumes the
// shadow and swaps it in, leaving no transfer of a retired number.
func TestNumberedTransfersMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	lower := e.runWorkload(60, 24)
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "more", Postings: []domain.PostingInput{
		{Debit: accountID("USD", 0), Credit: accountID("USD", 1), Asset: "USD", Amount: "1.00"}}}})
	head, _, err := e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	shadow := e.ledger + projections.ShadowSuffix
	e.buildTo(projections.Transfers{}, e.ledger, head)
	e.buildTo(projections.Transfers{}, shadow, lower)
	want, wantShadow := e.rows(projections.Transfers{}, e.ledger), e.rows(projections.Transfers{}, shadow)
	if len(want["transfer_rows"]) == 0 || len(wantShadow["transfer_rows"]) == 0 {
		t.Fatalf("%d live and %d shadow transfers: the test needs both", len(want["transfer_rows"]), len(wantShadow["transfer_rows"]))
	}
	e.backBeforeNumberedTransfers()

	testenv.NoError(t, projections.Migrate(ctx, e.pool))

	if diff := cmp.Diff(want, e.rows(projections.Transfers{}, e.ledger)); diff != "" {
		t.Errorf("live rows after 0024 (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantShadow, e.rows(projections.Transfers{}, shadow)); diff != "" {
		t.Errorf("shadow rows after 0024 (-before +after):\n%s", diff)
	}
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "after", Postings: []domain.PostingInput{
		{Debit: accountID("USD", 1), Credit: accountID("USD", 2), Asset: "USD", Amount: "2.00"}}}})
	head, _, err = e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	e.buildTo(projections.Transfers{}, e.ledger, head)
	ref := e.ledger + "~ref"
	e.buildTo(projections.Transfers{}, ref, head)
	if diff := cmp.Diff(e.rows(projections.Transfers{}, ref), e.rows(projections.Transfers{}, e.ledger)); diff != "" {
		t.Fatalf("transfers gone on from the migration (-from scratch +migrated):\n%s", diff)
	}
	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.Transfers{}, testLogger(t)).Run(ctx,
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("rebuild swapped at %d, want the head %d", at, head)
	}
	if diff := cmp.Diff(e.rows(projections.Transfers{}, ref), e.rows(projections.Transfers{}, e.ledger)); diff != "" {
		t.Errorf("transfers rebuilt (-from scratch +rebuilt):\n%s", diff)
	}
	e.checkNoOrphanLines()
}

// TestNumberedMigrationsKeepAConcurrentWrite: a batch an older ledgerd
// commits while 0023 or 0024 runs is in the migrated tables, not dropped
// with the old ones (each migration locks its tables first).
func TestNumberedMigrationsKeepAConcurrentWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		back func(*env)
		// write and exists take the ledger and arg: a batch of an older
		// ledgerd reads nothing it need not (a warm cache: no heads).
		write, exists string
		arg           string
	}{
		{"lines", (*env).backBeforeNumberedLines,
			`INSERT INTO movements (ledger, account, position, seq, posting_index, side, pending, kind, transfer_id,
				counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending, effective_at, recorded_at)
			VALUES ($1, $2, 1000000, 0, 0, 'debit', false, 'TransferCommitted', 'written-meanwhile', '{x}',
				1, 1, 0, 0, 0, now(), now())`,
			`SELECT EXISTS (SELECT 1 FROM movement_lines WHERE ledger = $1 AND account = $2 AND transfer_id = 'written-meanwhile')`,
			accountID("USD", 0)},
		{"transfers", (*env).backBeforeNumberedTransfers,
			`INSERT INTO transfers (ledger, id, kind, status, position, postings, effective_at, recorded_at, updated_position)
			VALUES ($1, $2, 'transfer', 'posted', 1000000, '[]', now(), now(), 1000000)`,
			`SELECT EXISTS (SELECT 1 FROM transfer_rows WHERE ledger = $1 AND id = $2)`,
			"written-meanwhile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			e := newEnv(t)
			head := e.runWorkload(10, 3)
			e.buildTo(projections.NewMovements(), e.ledger, head)
			e.buildTo(projections.Transfers{}, e.ledger, head)
			tc.back(e)
			w, err := e.pool.Begin(ctx)
			testenv.NoError(t, err)
			defer w.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // committed below
			_, err = w.Exec(ctx, tc.write, e.ledger, tc.arg)
			testenv.NoError(t, err)
			migrated := make(chan error, 1)
			go func() { migrated <- projections.Migrate(ctx, e.pool) }()
			testenv.NoError(t, waitForLockWaiter(ctx, e.pool))
			time.Sleep(100 * time.Millisecond) // a migration that copies without the lock gets that far
			testenv.NoError(t, w.Commit(ctx))
			testenv.NoError(t, <-migrated)
			var kept bool
			testenv.NoError(t, e.pool.QueryRow(ctx, tc.exists, e.ledger, tc.arg).Scan(&kept))
			if !kept {
				t.Error("the row written during the migration is gone")
			}
		})
	}
}
