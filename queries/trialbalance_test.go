package queries

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// The trial balance and projection status queries on read models written
// directly: their refusals, their bounds, and the lag arithmetic. That they
// agree with a replay of a real log is tested in projections and end to end
// in internal/daemon.

func TestMain(m *testing.M) { testenv.Main(m) }

func migrated(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	return pool
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	_, err := pool.Exec(t.Context(), sql, args...)
	testenv.NoError(t, err)
}

// fakeLedger writes a ledger's head at head, with events 1..events recorded a
// second apart from t0 (their payloads are not read here).
func fakeLedger(t *testing.T, pool *pgxpool.Pool, ledger string, head, events int64, t0 time.Time) {
	t.Helper()
	exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
		ledger, head)
	exec(t, pool, `INSERT INTO events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
		SELECT $1, p, 'AccountMetadataSet', 1, $3::timestamptz + p * interval '1 second', 'x', '{}',
			decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')
		FROM generate_series(1, $2::bigint) p`, ledger, events, t0)
}

func checkpoint(t *testing.T, pool *pgxpool.Pool, ledger, projection string, pos int64, eventAt *time.Time) {
	t.Helper()
	exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position, event_at)
		VALUES ($1, $2, 1, $3, $4)`, ledger, projection, pos, eventAt)
}

// waitCtx bounds a call that is expected to wait in vain (ErrNotReached):
// long enough that reading the head first never runs out of it on a loaded
// machine under -race (200 ms did), short enough to keep the test quick.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGetTrialBalanceRefuses(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	fakeLedger(t, pool, ledger, 10, 10, time.Now())
	checkpoint(t, pool, ledger, "balances", 6, nil)

	for _, tc := range []struct {
		name              string
		ledger            string
		asOf, minPosition uint64
		want              error
	}{
		{"unknown ledger", "nope", 0, 0, domain.ErrUnknownLedger},
		{"as of past the head", ledger, 11, 0, ErrBeyondHead},
		{"as of past the checkpoint, not reached", ledger, 7, 0, ErrNotReached},
		{"min position not reached", ledger, 0, 7, ErrNotReached},
		{"min position at the head, not reached", ledger, 0, 10, ErrNotReached},
		{"min position past the head", ledger, 3, 1 << 40, ErrMinPositionBeyondHead},
		{"min position one past the head", ledger, 0, 11, ErrMinPositionBeyondHead},
	} {
		ctx := t.Context() // the refusals come at once
		if errors.Is(tc.want, ErrNotReached) {
			ctx = waitCtx(t)
		}
		_, err := q.GetTrialBalance(ctx, tc.ledger, tc.asOf, tc.minPosition)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Past the head is refused at once: without a deadline, a wait would
	// last WaitMax and end in ErrNotReached.
	_, err := q.GetTrialBalance(t.Context(), ledger, 0, 11)
	if !errors.Is(err, ErrMinPositionBeyondHead) {
		t.Errorf("GetTrialBalance at min position 11, head 10: %v, want ErrMinPositionBeyondHead", err)
	}
	_, err = q.GetBalances(t.Context(), ledger, []string{"a"}, 11)
	if !errors.Is(err, ErrMinPositionBeyondHead) {
		t.Errorf("GetBalances at min position 11, head 10: %v, want ErrMinPositionBeyondHead", err)
	}
	// At the checkpoint and the head: answered.
	for _, asOf := range []uint64{0, 6} {
		got, err := q.GetTrialBalance(t.Context(), ledger, asOf, 6)
		testenv.NoError(t, err)
		if got.Position != 6 || len(got.Lines) != 0 {
			t.Errorf("as of %d: %+v, want no line at position 6", asOf, got)
		}
	}
}

// A ledger projected before migration 0004 has history from its checkpoint
// then on, as one batch 1..checkpoint: an answer before it folds the log from
// position 1, which is allowed up to FoldMax events only.
func TestTrialBalanceBeforeBackfilledHistory(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	const backfilled = 3 * FoldMax
	fakeLedger(t, pool, ledger, backfilled, 0, time.Now())
	checkpoint(t, pool, ledger, "balances", backfilled, nil)
	exec(t, pool, `INSERT INTO assets (ledger, code, scale, position) VALUES ($1, 'USD', 2, 1)`, ledger)
	exec(t, pool, `INSERT INTO trial_balance_history (ledger, asset, position, batch_from, debits_posted, credits_posted,
		debits_pending, credits_pending, accounts, accounts_closed) VALUES ($1, 'USD', $2, 1, 7.50, 7.50, 0.00, 0.00, 3, 1)`,
		ledger, backfilled)

	_, err := q.GetTrialBalance(t.Context(), ledger, FoldMax+1, 0)
	if !errors.Is(err, ErrHistoryUnavailable) {
		t.Errorf("as of %d: %v, want ErrHistoryUnavailable", FoldMax+1, err)
	}
	zero := TrialBalanceLine{Asset: "USD", DebitsPosted: "0.00", CreditsPosted: "0.00", DebitsPending: "0.00", CreditsPending: "0.00"}
	backfill := TrialBalanceLine{Asset: "USD", DebitsPosted: "7.50", CreditsPosted: "7.50", DebitsPending: "0.00",
		CreditsPending: "0.00", Accounts: 3, AccountsClosed: 1}
	for _, tc := range []struct {
		asOf uint64
		want TrialBalanceLine
	}{
		{FoldMax, zero}, // the log holds no movement (no event at all) here
		{backfilled, backfill},
	} {
		got, err := q.GetTrialBalance(t.Context(), ledger, tc.asOf, 0)
		testenv.NoError(t, err)
		if diff := cmp.Diff(TrialBalance{Lines: []TrialBalanceLine{tc.want}, Position: tc.asOf}, got); diff != "" {
			t.Errorf("as of %d (-want +got):\n%s", tc.asOf, diff)
		}
	}
}

func TestTrialBalanceLinesBound(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	fakeLedger(t, pool, ledger, 5, 0, time.Now())
	checkpoint(t, pool, ledger, "balances", 5, nil)
	addAssets := func(from, to int) {
		exec(t, pool, `INSERT INTO assets (ledger, code, scale, position) SELECT $1, 'A' || i, 0, 1
			FROM generate_series($2::int, $3::int) i`, ledger, from, to)
		exec(t, pool, `INSERT INTO trial_balances (ledger, asset, debits_posted, credits_posted, debits_pending,
				credits_pending, accounts, accounts_closed, position)
			SELECT $1, 'A' || i, 0, 0, 0, 0, 0, 0, 1 FROM generate_series($2::int, $3::int) i`, ledger, from, to)
		exec(t, pool, `INSERT INTO trial_balance_history (ledger, asset, position, batch_from, debits_posted,
				credits_posted, debits_pending, credits_pending, accounts, accounts_closed)
			SELECT $1, 'A' || i, 1, 1, 0, 0, 0, 0, 0, 0 FROM generate_series($2::int, $3::int) i`, ledger, from, to)
	}
	addAssets(1, TrialBalanceLinesMax)
	for _, asOf := range []uint64{0, 3} {
		got, err := q.GetTrialBalance(t.Context(), ledger, asOf, 0)
		testenv.NoError(t, err)
		if len(got.Lines) != TrialBalanceLinesMax {
			t.Errorf("as of %d: %d lines, want %d", asOf, len(got.Lines), TrialBalanceLinesMax)
		}
	}
	addAssets(TrialBalanceLinesMax+1, TrialBalanceLinesMax+1)
	for _, asOf := range []uint64{0, 3} {
		if _, err := q.GetTrialBalance(t.Context(), ledger, asOf, 0); !errors.Is(err, ErrTooManyAssets) {
			t.Errorf("as of %d with %d assets: %v, want ErrTooManyAssets", asOf, TrialBalanceLinesMax+1, err)
		}
	}
}

func TestProjectionStatusLag(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger, other := testenv.Name(t), testenv.Name(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(pos int) *time.Time { v := t0.Add(time.Duration(pos) * time.Second); return &v }
	fakeLedger(t, pool, ledger, 10, 10, t0)
	fakeLedger(t, pool, other, 2, 2, t0)
	checkpoint(t, pool, ledger, "caught-up", 10, at(10))
	checkpoint(t, pool, ledger, "behind", 4, at(4))
	checkpoint(t, pool, ledger, "fresh", 0, nil)     // nothing applied: from the first event
	checkpoint(t, pool, ledger, "skewed", 5, at(60)) // a clock stepped back: never negative
	checkpoint(t, pool, other, "behind", 1, at(1))

	got, err := q.GetProjectionStatus(t.Context(), ledger)
	testenv.NoError(t, err)
	type lag struct {
		Name                   string
		Position, Head, Behind uint64
		Seconds                float64
	}
	var lags []lag
	for _, s := range got {
		if s.Ledger != ledger || s.Version != 1 || s.UpdatedAt.IsZero() {
			t.Errorf("%+v: want ledger %s, version 1, an update time", s, ledger)
		}
		lags = append(lags, lag{s.Name, s.Position, s.Head, s.LagPositions, s.LagSeconds})
	}
	want := []lag{{"behind", 4, 10, 6, 6}, {"caught-up", 10, 10, 0, 0}, {"fresh", 0, 10, 10, 9}, {"skewed", 5, 10, 5, 0}}
	if diff := cmp.Diff(want, lags); diff != "" {
		t.Errorf("lags of %s (-want +got):\n%s", ledger, diff)
	}

	all, err := q.GetProjectionStatus(t.Context(), "")
	testenv.NoError(t, err)
	if len(all) != 5 {
		t.Errorf("every ledger: %d projections, want 5", len(all))
	}
	if _, err := q.GetProjectionStatus(t.Context(), "nope"); !errors.Is(err, domain.ErrUnknownLedger) {
		t.Errorf("unknown ledger: %v, want domain.ErrUnknownLedger", err)
	}
}

func TestProjectionStatusBound(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	add := func(from, to int) {
		exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
			SELECT 'l' || (i / 16), 'p' || (i % 16), 1, 0 FROM generate_series($1::int, $2::int) i`, from, to)
	}
	add(0, ProjectionStatusMax-1)
	got, err := q.GetProjectionStatus(t.Context(), "")
	testenv.NoError(t, err)
	if len(got) != ProjectionStatusMax {
		t.Errorf("%d projections, want %d", len(got), ProjectionStatusMax)
	}
	add(ProjectionStatusMax, ProjectionStatusMax)
	if _, err := q.GetProjectionStatus(t.Context(), ""); !errors.Is(err, ErrTooManyProjections) {
		t.Errorf("%d projections: %v, want ErrTooManyProjections", ProjectionStatusMax+1, err)
	}
}

// The fold applies each event as the balances projector does: a post
// releases what was held and posts what was posted, a void or an expiry
// releases, an account opened counts, a closed one is named.
func TestFoldEvents(t *testing.T) {
	t.Parallel()
	usd := func(units int64) domain.Amount { return domain.Amount{Units: domain.UnitsFromInt64(units), Scale: 2} }
	p := domain.Posting{Debit: "a", Credit: "b", Asset: "USD", Amount: usd(1000)}
	f := fold{sums: map[string]*assetSums{}}
	for _, e := range []domain.Event{
		domain.AccountOpened{ID: "a", Asset: "USD", Normal: domain.SideDebit},
		domain.AccountOpened{ID: "b", Asset: "USD", Normal: domain.SideCredit},
		domain.AssetDefined{Code: "EUR", Scale: 2},
		domain.TransferPending{ID: "h1", Postings: []domain.Posting{p}},
		domain.TransferPending{ID: "h2", Postings: []domain.Posting{p}},
		domain.TransferPending{ID: "h3", Postings: []domain.Posting{p}},
		domain.PendingPosted{ID: "h1:post", PendingID: "h1", Postings: []domain.HeldPosting{
			{Debit: "a", Credit: "b", Asset: "USD", Amount: usd(400), Held: usd(1000)}}},
		domain.PendingVoided{ID: "h2:void", PendingID: "h2", Postings: []domain.Posting{p}},
		domain.TransferCommitted{ID: "t", Postings: []domain.Posting{p}},
		domain.TransferReversed{ID: "t:rev", TransferID: "t", Postings: []domain.Posting{{Debit: "b", Credit: "a", Asset: "USD", Amount: usd(250)}}},
		domain.AccountClosed{ID: "c"},
		domain.AccountMetadataSet{ID: "a"},
	} {
		f.add(e)
	}
	got := map[string][5]string{}
	for code, a := range f.sums {
		got[code] = [5]string{domain.FormatMinor(&a.debitsPosted, a.scale), domain.FormatMinor(&a.creditsPosted, a.scale),
			domain.FormatMinor(&a.debitsPending, a.scale), domain.FormatMinor(&a.creditsPending, a.scale), big.NewInt(a.opened).String()}
	}
	// Posted 4.00 + 10.00 + 2.50 each side; held 10.00 three times, less 10.00 posted, 10.00 voided.
	want := map[string][5]string{"USD": {"16.50", "16.50", "10.00", "10.00", "2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fold (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c"}, f.closed); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
}
