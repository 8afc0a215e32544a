package projections_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
	"github.com/ledgerd/ledger/queries"
)

// checkServedBalances requires the balances r serves from memory to be the
// read model's under key at r's checkpoint: each account it holds, its
// totals, asset and last position as its last statement line says (e's
// balancesOf); when all, every account of the read model held. An account
// that does not exist, asked with others, is not answered from memory.
func checkServedBalances(t *testing.T, e *env, key string, r *projections.Runner, all bool) {
	t.Helper()
	var checkpoint int64
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT position FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		key, projections.MovementsName).Scan(&checkpoint))
	if uint64(checkpoint) != r.Position() {
		t.Fatalf("checkpoint %d, the runner at %d: stopped at the end of its source, they agree", checkpoint, r.Position())
	}
	want := e.in(t).balancesOf(key)
	if len(want) == 0 {
		t.Fatalf("no accounts under %s", key)
	}
	var held []string
	for _, account := range slices.Sorted(maps.Keys(want)) {
		got, at, ok := r.ServedBalances([]string{account})
		if !ok {
			if all {
				t.Errorf("%s not served from memory, want every account", account)
			}
			continue
		}
		if at != uint64(checkpoint) {
			t.Fatalf("%s served at %d, the checkpoint is %d", account, at, checkpoint)
		}
		b := got[0]
		served := balance{Asset: b.Asset, DebitsPosted: b.DebitsPosted.Format(b.Scale), CreditsPosted: b.CreditsPosted.Format(b.Scale),
			DebitsPending: b.DebitsPending.Format(b.Scale), CreditsPending: b.CreditsPending.Format(b.Scale), Position: b.Position}
		if len(got) != 1 || b.Account != account || served != want[account] {
			t.Errorf("%s served from memory as %+v, the read model says %+v", account, got, want[account])
		}
		held = append(held, account)
	}
	if len(held) == 0 {
		t.Fatalf("none of %d accounts served from memory", len(want))
	}
	if got, _, ok := r.ServedBalances(held); !ok || len(got) != len(held) {
		t.Errorf("the %d accounts held, asked together: ok %v, %d answers", len(held), ok, len(got))
	}
	if _, _, ok := r.ServedBalances(append(held[:1:1], "no-such-account")); ok {
		t.Errorf("answered from memory with an account that does not exist")
	}
	t.Logf("%d of %d accounts served from memory at %d", len(held), len(want), checkpoint)
}

// TestServedBalancesOnlyWhatCommitted: the batch holding position failAt
// writes its statement lines, and its transaction fails at COMMIT (a
// deferred trigger), again and again. Whatever the runner serves from
// memory meanwhile is at most at its checkpoint, before the batch, and is
// the read model's there: never the batch written and rolled back. Once the
// commit goes through, it serves the head.
func TestServedBalancesOnlyWhatCommitted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 9)
	failAt := head / 2
	_, err := e.pool.Exec(t.Context(), `CREATE SEQUENCE commit_failures;
		CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.position = `+fmt.Sprint(failAt)+` THEN
				PERFORM nextval('commit_failures');
				RAISE EXCEPTION 'the test fails the commit of position %', NEW.position;
			END IF;
			RETURN NEW;
		END $$;
		CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON movements DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION fail_commit()`)
	testenv.NoError(t, err)
	var accounts []string
	for _, a := range workloadAssets {
		for i := range accountsPerAsset {
			accounts = append(accounts, accountID(a.Code, i))
		}
	}
	r := e.startRunner(t.Context(), projections.NewMovements().KeepServed(), batches{src: e.natsSource(), size: 7})
	deadline := time.Now().Add(waitMax)
	served := 0
	for {
		var failures int64
		testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM commit_failures`).
			Scan(&failures))
		if failures >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit of position %d failed %d times in %v, want 3", failAt, failures, waitMax)
		}
		// Between a failed commit and the runner's retry, which loads its
		// checkpoint again, the batch's rows are at hand: they must not be
		// served.
		for _, a := range accounts {
			if _, at, ok := r.ServedBalances([]string{a}); ok {
				served++
				if at >= failAt {
					t.Fatalf("%s served from memory at %d: the batch of %d never committed", a, at, failAt)
				}
			}
		}
	}
	if at := r.Position(); at >= failAt {
		t.Fatalf("the runner at %d, past the batch of %d whose commit fails", at, failAt)
	}
	t.Logf("%d answers from memory while the commit of %d failed", served, failAt)

	_, err = e.pool.Exec(t.Context(), `DROP TRIGGER fail_commit ON movements`)
	testenv.NoError(t, err)
	waitFor(t, r, head)
	checkServedBalances(t, e, e.ledger, r.Runner, false)
}

// TestServedBalancesAfterAnotherRunner: a projector's runner stops, another
// process's runner applies the next batch (the only one to move USD-0 and
// USD-1), and a runner of the first projector goes on from there. What the
// first held of those accounts is not the read model's any more: it serves
// them no longer, and every account it serves is the read model's.
func TestServedBalancesAfterAnotherRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.runWorkload(60, 13)
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "mid", Postings: []domain.PostingInput{
		{Debit: "USD-0", Credit: "USD-1", Asset: "USD", Amount: "12.34"}}}})
	var rest []domain.Command
	for i := range 20 {
		rest = append(rest, &domain.CreateTransfer{ID: fmt.Sprintf("rest-%d", i), Postings: []domain.PostingInput{
			{Debit: fmt.Sprintf("USD-%d", 2+i%4), Credit: fmt.Sprintf("USD-%d", 2+(i+1)%4), Asset: "USD", Amount: "1.00"}}})
	}
	e.submit(rest)
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)

	p := projections.NewMovements().KeepServed()
	first := e.startRunner(t.Context(), p, projectortest.UpTo{Src: batches{src: e.natsSource(), size: 7}, End: before})
	waitFor(t, first, before)
	first.stop()
	other := e.startRunner(t.Context(), projections.NewMovements(), projectortest.UpTo{Src: e.natsSource(), End: before + 1})
	waitFor(t, other, before+1)
	other.stop()
	again := e.startRunner(t.Context(), p, batches{src: e.natsSource(), size: 7})
	waitFor(t, again, head)
	checkServedBalances(t, e, e.ledger, again.Runner, false)
	if _, _, ok := again.ServedBalances([]string{"USD-0"}); ok {
		t.Errorf("USD-0 served from memory: it was held before another runner moved it")
	}
}

// checkGetBalancesFromMemory requires GetBalances answered from r's memory
// (queries.Service.WithServed) to be the read model's answer, account for
// account, at the same position, and min_position past it to be waited for.
func checkGetBalancesFromMemory(t *testing.T, e *env, r *runningRunner) {
	t.Helper()
	var accounts []string
	rows, err := e.pool.Query(t.Context(), `SELECT account FROM movement_heads WHERE ledger = $1 ORDER BY account DESC`, e.ledger)
	testenv.NoError(t, err)
	accounts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	fromDB := queries.New(e.pool, nil)
	fromMemory := queries.New(e.pool, nil).WithServed(func(string) queries.BalanceServer { return r })
	want, err := fromDB.GetBalances(t.Context(), e.ledger, accounts, 0)
	testenv.NoError(t, err)
	got, err := fromMemory.GetBalances(t.Context(), e.ledger, accounts, want.Position)
	testenv.NoError(t, err)
	if n := fromMemory.FromMemory(); n != 1 {
		t.Fatalf("%d calls answered from memory, want 1", n)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("GetBalances from memory differs from the read model's (-read model +memory):\n%s", diff)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := fromMemory.GetBalances(ctx, e.ledger, accounts, want.Position+1); !errors.Is(err, queries.ErrMinPositionBeyondHead) {
		t.Fatalf("GetBalances at min_position %d, past the head: %v, want ErrMinPositionBeyondHead", want.Position+1, err)
	}
}

// TestServedBalancesOnlyWhileRead: a projector whose served balances nobody
// has read (a new one) keeps none; the first read (not answered from memory)
// makes it keep them, from the next batch on, for the accounts the batches
// move, and for those the read model answers at the position they are at.
func TestServedBalancesOnlyWhileRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.runWorkload(40, 17)
	r := e.startRunner(t.Context(), projections.NewMovements(), batches{src: e.natsSource(), size: 7})
	waitFor(t, r, before)
	if _, _, ok := r.ServedBalances([]string{"USD-0"}); ok {
		t.Fatalf("USD-0 served from memory with nobody reading")
	}
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "after", Postings: []domain.PostingInput{
		{Debit: "USD-0", Credit: "USD-1", Asset: "USD", Amount: "1.00"}}}})
	waitFor(t, r, before+1)
	if _, at, ok := r.ServedBalances([]string{"USD-1", "USD-0"}); !ok || at != before+1 {
		t.Fatalf("USD-0 and USD-1 after a read and a transfer: served %v at %d, want at %d", ok, at, before+1)
	}
	if _, _, ok := r.ServedBalances([]string{"USD-2"}); ok {
		t.Fatalf("USD-2 served from memory: not moved since its balances were first read")
	}
	// Read from the read model at the position the served balances are at,
	// USD-2 is held from then on (read-through); offered at another
	// position, USD-3 is not.
	q := queries.New(e.pool, nil).WithServed(func(string) queries.BalanceServer { return r })
	if _, err := q.GetBalances(t.Context(), e.ledger, []string{"USD-2"}, before+1); err != nil {
		t.Fatal(err)
	}
	if n := q.FromMemory(); n != 0 {
		t.Fatalf("USD-2 answered from memory (%d) before it was held", n)
	}
	if _, at, ok := r.ServedBalances([]string{"USD-2"}); !ok || at != before+1 {
		t.Fatalf("USD-2 after its read from the read model: served %v at %d, want at %d", ok, at, before+1)
	}
	var ledgerNo int32
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, e.ledger).
		Scan(&ledgerNo))
	fake := []projections.ServedBalance{{Account: "USD-3", Asset: "USD", Scale: 2}}
	r.OfferBalances(before, ledgerNo, fake)
	if _, _, ok := r.ServedBalances([]string{"USD-3"}); ok {
		t.Fatalf("USD-3 served from memory after an offer at %d, the served balances being at %d", before, before+1)
	}
	r.OfferBalances(before+1, ledgerNo+1, fake)
	if _, _, ok := r.ServedBalances([]string{"USD-3"}); ok {
		t.Fatalf("USD-3 served from memory after an offer of lines numbered %d, the served balances' being %d", ledgerNo+1, ledgerNo)
	}
	checkServedBalances(t, e, e.ledger, r.Runner, false)
}
