package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// Tests of migration 0021 (an account's balance is its last statement
// line's; the accounts table moves to the movements projection), and the
// harness the tests of earlier migrations share with it: putting a read
// model back as it stood before 0021.

// buildTo runs proj under key (the ledger's, or one of its "~" keys) on the
// ledger's log until its checkpoint is at end, and stops it there.
func (e *env) buildTo(proj projections.Projector, key string, end uint64) {
	e.t.Helper()
	r := projections.NewRunner(e.pool, key, proj, projectortest.UpTo{Src: projections.NewLogSource(e.store, e.ledger), End: end}, testLogger(e.t))
	stop := start(e.t, e.t.Context(), fmt.Sprintf("runner of %s under %s", proj.Name(), key), r.Run)
	defer stop()
	waitFor(e.t, &runningRunner{Runner: r, stop: stop}, end)
}

// versionOf returns the version of proj's checkpoint under key; 0 when it
// has none.
func (e *env) versionOf(proj projections.Projector, key string) int {
	e.t.Helper()
	var v int
	err := e.pool.QueryRow(e.t.Context(), `SELECT version FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		key, proj.Name()).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	testenv.NoError(e.t, err)
	return v
}

// backBeforeBalancesFromLines puts the read model back as it stood before
// migration 0021: trial_accounts is the balances table again, each of the
// ledger's rows with the account's four totals at the balances checkpoint
// and the position of the last event that changed them (its opening, a
// movement or its closing), as the balances projector of version 3 wrote
// them (from a replay of the log); the checkpoints are at balances version 3
// and movements version 1; and 0021 is pending. The accounts table is left
// as it is. Only the ledger may have balances rows.
func (e *env) backBeforeBalancesFromLines() {
	t := e.t
	t.Helper()
	at := e.checkpointOf(projections.Balances{}, e.ledger)
	r := newReplayer(e)
	r.advance(at)
	var (
		ids            []string
		dp, cp, dq, cq []string
		positions      []int64
	)
	for _, id := range r.accounts {
		a, _ := r.st.Account(id)
		ids = append(ids, id)
		dp, cp = append(dp, a.DebitsPosted.Format(a.Scale)), append(cp, a.CreditsPosted.Format(a.Scale))
		dq, cq = append(dq, a.DebitsPending.Format(a.Scale)), append(cq, a.CreditsPending.Format(a.Scale))
		positions = append(positions, int64(max(a.Position, r.moved[id], a.ClosedAt())))
	}
	testenv.NoError(t, pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
		if err := execEach(t.Context(), tx,
			`ALTER TABLE trial_accounts RENAME TO balances`,
			`ALTER TABLE balances RENAME CONSTRAINT trial_accounts_pkey TO balances_pkey`,
			`ALTER TABLE balances ADD COLUMN debits_posted numeric, ADD COLUMN credits_posted numeric,
				ADD COLUMN debits_pending numeric, ADD COLUMN credits_pending numeric`,
		); err != nil {
			return err
		}
		tag, err := tx.Exec(t.Context(), `UPDATE balances b SET debits_posted = x.dp, credits_posted = x.cp,
				debits_pending = x.dq, credits_pending = x.cq, position = x.position
			FROM unnest($2::text[], $3::text[]::numeric[], $4::text[]::numeric[], $5::text[]::numeric[],
				$6::text[]::numeric[], $7::bigint[]) AS x(account, dp, cp, dq, cq, position)
			WHERE b.ledger = $1 AND b.account = x.account`, e.ledger, ids, dp, cp, dq, cq, positions)
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != len(ids) {
			return fmt.Errorf("%d balances rows for the %d accounts opened by %d", tag.RowsAffected(), len(ids), at)
		}
		return execEach(t.Context(), tx,
			`ALTER TABLE balances ALTER COLUMN debits_posted SET NOT NULL, ALTER COLUMN credits_posted SET NOT NULL,
				ALTER COLUMN debits_pending SET NOT NULL, ALTER COLUMN credits_pending SET NOT NULL`,
			`UPDATE projection_checkpoints SET version = 3 WHERE projection = 'balances'`,
			`UPDATE projection_checkpoints SET version = 1 WHERE projection = 'movements'`,
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0021_balances_from_lines.sql'`,
			// Before 0021, before 0025 too: its freezes are backfilled again.
			`ALTER TABLE accounts DROP COLUMN frozen_position`,
			`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0025_accounts_frozen.sql'`,
		)
	}))
}

// execEach runs each statement in tx, in order, and names the one that fails.
func execEach(ctx context.Context, tx pgx.Tx, sqls ...string) error {
	for _, sql := range sqls {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// TestBalancesFromLinesMigration: migration 0021, on a read model projected
// before it with the movements projection behind, ahead of or without a
// checkpoint beside the balances one, leaves the balances table without its
// totals as trial_accounts, its rows otherwise as they were; writes the
// accounts table again as the movements projector writes it at its own
// checkpoint, whatever the balances projector had written at its; moves the
// live checkpoints to the new versions and leaves a rebuild's shadow behind
// (a later rebuild drops it). Both projectors then go on from there to the
// rows of a build from scratch.
func TestBalancesFromLinesMigration(t *testing.T) {
	t.Parallel()
	// lower is in the middle of the accounts' amendments (amendAccounts):
	// the accounts at lower and at the head differ.
	for _, tc := range []struct {
		name                    string
		movementsAt, balancesAt func(lower, head uint64) uint64
	}{
		{"movements behind balances", func(lower, _ uint64) uint64 { return lower }, func(_, head uint64) uint64 { return head }},
		{"movements ahead of balances", func(_, head uint64) uint64 { return head }, func(lower, _ uint64) uint64 { return lower }},
		{"movements not started", func(uint64, uint64) uint64 { return 0 }, func(_, head uint64) uint64 { return head }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testBalancesFromLinesMigration(t, tc.movementsAt, tc.balancesAt)
		})
	}
}

func testBalancesFromLinesMigration(t *testing.T, movementsAt, balancesAt func(lower, head uint64) uint64) {
	ctx := t.Context()
	e := newEnv(t)
	e.runWorkload(60, 21)
	lower := e.amendAccounts() - 3
	more := make([]domain.Command, 5)
	for i := range more {
		more[i] = &domain.CreateTransfer{ID: fmt.Sprintf("more-%d", i), Postings: []domain.PostingInput{
			{Debit: accountID("USD", 0), Credit: "meta:1", Asset: "USD", Amount: "1.00"}}}
	}
	e.submit(more)
	head, _, err := e.store.Head(ctx, e.ledger)
	testenv.NoError(t, err)
	mAt, bAt := movementsAt(lower, head), balancesAt(lower, head)
	shadow := e.ledger + projections.ShadowSuffix
	// The balances rows carry over; trial_accounts' position, before 0021
	// that of the last change of the account's totals, is its opening's or
	// closing's again, as the projector writes it.
	balancesRows := batchDependent

	t.Log("the read model before 0021: balances and movements at their checkpoints, the accounts as balances wrote them")
	e.buildTo(projections.Balances{}, e.ledger, bAt)
	if mAt > 0 {
		e.buildTo(projections.NewMovements(), e.ledger, mAt)
	}
	wantBalances := projectortest.Rows(t, e.pool, projections.Balances{}, e.ledger, balancesRows)
	wantMovements := projectortest.Rows(t, e.pool, projections.NewMovements(), e.ledger, batchDependent)
	// The accounts rows of the balances projector of version 3 at its
	// checkpoint: the same code wrote them. A rebuild of movements,
	// interrupted there, leaves them under its shadow, as a rebuild of
	// balances (version 3) would.
	e.buildTo(projections.NewMovements(), shadow, bAt)
	for _, sql := range []string{
		`DELETE FROM accounts WHERE ledger = $1`,
		`INSERT INTO accounts (ledger, account, asset, normal_balance, min_balance, max_balance, metadata, closed,
			opened_position, opened_at, position)
		SELECT $1, account, asset, normal_balance, min_balance, max_balance, metadata, closed, opened_position, opened_at, position
		FROM accounts WHERE ledger = $1 || '` + projections.ShadowSuffix + `'`,
	} {
		_, err := e.pool.Exec(ctx, sql, e.ledger)
		testenv.NoError(t, err)
	}
	before := projectortest.Rows(t, e.pool, projections.NewMovements(), e.ledger, batchDependent)["accounts"]
	if len(before) == 0 || mAt != bAt && cmp.Equal(before, wantMovements["accounts"]) {
		t.Fatalf("%d accounts rows at %d, the same at %d: the test needs them to differ", len(before), bAt, mAt)
	}
	e.backBeforeBalancesFromLines()

	testenv.NoError(t, projections.Migrate(ctx, e.pool))

	t.Run("schema", func(t *testing.T) {
		var gone, pkey bool
		var columns []string
		testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT to_regclass('balances') IS NULL,
				EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'trial_accounts_pkey' AND contype = 'p'),
				(SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns
					WHERE table_schema = current_schema() AND table_name = 'trial_accounts')`).Scan(&gone, &pkey, &columns))
		want := []string{"account", "asset", "closed", "ledger", "normal_balance", "position", "scale"}
		if !gone || !pkey || !slices.Equal(columns, want) {
			t.Errorf("balances gone %t, trial_accounts_pkey %t, trial_accounts' columns %v, want %v", gone, pkey, columns, want)
		}
	})
	t.Run("balances rows kept", func(t *testing.T) {
		got := projectortest.Rows(t, e.pool, projections.Balances{}, e.ledger, balancesRows)
		if diff := cmp.Diff(wantBalances, got); diff != "" {
			t.Errorf("balances read model after 0021 (-before +after):\n%s", diff)
		}
	})
	t.Run("accounts at the movements checkpoint", func(t *testing.T) {
		// And the movements' own tables untouched.
		got := projectortest.Rows(t, e.pool, projections.NewMovements(), e.ledger, batchDependent)
		if diff := cmp.Diff(wantMovements, got); diff != "" {
			t.Errorf("movements read model after 0021 (-projected at %d +migrated):\n%s", mAt, diff)
		}
		var n int
		testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE ledger = $1`, shadow).Scan(&n))
		if n != 0 {
			t.Errorf("%d accounts rows under the shadow after 0021, want none", n)
		}
	})
	t.Run("versions", func(t *testing.T) {
		wantMv := 0 // no checkpoint
		if mAt > 0 {
			wantMv = projections.NewMovements().Version()
		}
		if b, m := e.versionOf(projections.Balances{}, e.ledger), e.versionOf(projections.NewMovements(), e.ledger); b != (projections.Balances{}).Version() || m != wantMv {
			t.Errorf("live checkpoints at balances version %d, movements %d; want %d and %d", b, m, (projections.Balances{}).Version(), wantMv)
		}
		if v := e.versionOf(projections.NewMovements(), shadow); v != 1 {
			t.Errorf("the shadow's checkpoint at version %d, want 1 (left for the next rebuild to drop)", v)
		}
	})
	if t.Failed() {
		return
	}

	t.Log("both projectors go on to the head, where their rows are those of a build from scratch")
	e.buildTo(projections.Balances{}, e.ledger, head)
	e.buildTo(projections.NewMovements(), e.ledger, head)
	ref := e.ledger + "~ref"
	e.buildTo(projections.Balances{}, ref, head)
	e.buildTo(projections.NewMovements(), ref, head)
	for _, c := range []struct {
		proj projections.Projector
		drop map[string][]string
	}{{projections.Balances{}, balancesRows}, {projections.NewMovements(), batchDependent}} {
		want, got := projectortest.Rows(t, e.pool, c.proj, ref, c.drop), projectortest.Rows(t, e.pool, c.proj, e.ledger, c.drop)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s at the head, gone on from the migration (-from scratch +migrated):\n%s", c.proj.Name(), diff)
		}
	}
	e.checkAt(head)
	e.checkTrialAt(head)
	e.checkAccounts()

	t.Log("a rebuild of movements drops the old shadow and swaps in the rows of a build from scratch")
	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(ctx,
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("rebuild swapped at %d, want the head %d", at, head)
	}
	want := projectortest.Rows(t, e.pool, projections.NewMovements(), ref, batchDependent)
	if diff := cmp.Diff(want, projectortest.Rows(t, e.pool, projections.NewMovements(), e.ledger, batchDependent)); diff != "" {
		t.Errorf("movements rebuilt (-from scratch +rebuilt):\n%s", diff)
	}
	for table, rows := range projectortest.Rows(t, e.pool, projections.NewMovements(), shadow, nil) {
		if len(rows) != 0 {
			t.Errorf("%d rows of %s under the shadow after the rebuild", len(rows), table)
		}
	}
}
