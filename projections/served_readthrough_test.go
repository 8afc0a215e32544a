package projections_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// TestServedBalancesReadThroughAcrossRebuildSwap: USD-0's lines are wrong
// (an operator or a bug wrote them), and a rebuild swaps in the log's at the
// live checkpoint, P, which the swap keeps. A GetBalances reads the lines
// just before the swap (P, the rows replaced: the read model's then); the
// swap commits and the ledger's readers restart (internal/daemon
// restartReaders: the new runner loads the checkpoint, P, its served
// balances empty); then the call offers what it read (read-through) to the
// balance server it finds now, the new runner, whose served balances are at
// P. They must not take the rows replaced: every balance served from memory
// must be what the read model says at the position answered.
func TestServedBalancesReadThroughAcrossRebuildSwap(t *testing.T) {
	t.Parallel()
	e, before := corruptedUSD0(t)

	old := e.startRunner(t.Context(), projections.NewMovements().KeepServed(), e.natsSource())
	waitFor(t, old, before)
	var fresh *runningRunner
	calls := 0
	q := queries.New(e.pool, nil).WithServed(func(string) queries.BalanceServer {
		calls++
		if calls == 1 {
			return old // the call looks in memory first: USD-0 is not held
		}
		// The call has read the lines; before it offers them, the swap
		// commits and the readers restart.
		old.stop()
		at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(t.Context(),
			func(projections.Progress) {})
		testenv.NoError(t, err)
		if at != before {
			t.Fatalf("swapped at %d, want the live checkpoint %d", at, before)
		}
		fresh = e.startRunner(t.Context(), projections.NewMovements().KeepServed(), e.natsSource())
		waitFor(t, fresh, before)
		return fresh
	})
	read, err := q.GetBalances(t.Context(), e.ledger, []string{"USD-0"}, before)
	testenv.NoError(t, err)
	if calls != 2 || fresh == nil {
		t.Fatalf("the balance server looked up %d times, want 2 (memory, then the offer)", calls)
	}

	fromDB := queries.New(e.pool, nil)
	fromMemory := queries.New(e.pool, nil).WithServed(func(string) queries.BalanceServer { return fresh })
	want, err := fromDB.GetBalances(t.Context(), e.ledger, []string{"USD-0"}, before)
	testenv.NoError(t, err)
	got, err := fromMemory.GetBalances(t.Context(), e.ledger, []string{"USD-0"}, before)
	testenv.NoError(t, err)
	t.Logf("read before the swap at %d: %+v", read.Position, read.Balances)
	if n := fromMemory.FromMemory(); n != 0 && got.Position == want.Position {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("after the swap, USD-0 answered from the new runner's memory at %d differs from the read model "+
				"at the same position (-read model +memory):\n%s", got.Position, diff)
		}
	}
}
