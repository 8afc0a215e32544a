package projections_test

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestServedBalancesAfterRebuildSwap: the movements rows of USD-0 are wrong
// (an operator or a bug wrote them), and the live runner's projector, which
// serves balances from memory, read them when USD-0 next moved. A rebuild
// swaps in the rows the log gives at the live checkpoint (the swap keeps its
// position): the read model is right again. The live runner's next batch
// finds the lines renumbered (ErrCheckpointMoved) and starts again from the
// checkpoint, at the position its served balances are at: what it serves
// of USD-0 must be what the rebuilt read model says, not what the rows
// replaced said (docs/architecture.md: "a restart from the checkpoint starts
// it again, empty").
func TestServedBalancesAfterRebuildSwap(t *testing.T) {
	t.Parallel()
	e, before := corruptedUSD0(t)
	live := e.startRunner(t.Context(), projections.NewMovements().KeepServed(), e.natsSource())
	waitFor(t, live, before)
	e.submit([]domain.Command{&domain.CreateTransfer{ID: "moves-usd-0", Postings: []domain.PostingInput{
		{Debit: "USD-0", Credit: "USD-1", Asset: "USD", Amount: "1.00"}}}})
	waitFor(t, live, before+1)

	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, projections.NewMovements(), testLogger(t)).Run(t.Context(),
		func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != before+1 {
		t.Fatalf("swapped at %d, want the live checkpoint %d", at, before+1)
	}

	e.submit([]domain.Command{&domain.CreateTransfer{ID: "moves-others", Postings: []domain.PostingInput{
		{Debit: "USD-2", Credit: "USD-3", Asset: "USD", Amount: "1.00"}}}})
	waitFor(t, live, before+2)
	want := e.balances()["USD-0"]
	got, pos, ok := live.ServedBalances([]string{"USD-0"})
	if !ok {
		return // not served from memory: the read model answers
	}
	b := got[0]
	served := balance{Asset: b.Asset, DebitsPosted: b.DebitsPosted.Format(b.Scale), CreditsPosted: b.CreditsPosted.Format(b.Scale),
		DebitsPending: b.DebitsPending.Format(b.Scale), CreditsPending: b.CreditsPending.Format(b.Scale), Position: b.Position}
	if served != want {
		t.Fatalf("after the rebuild's swap, USD-0 served from memory at %d as %+v; the rebuilt read model says %+v",
			pos, served, want)
	}
}

// corruptedUSD0 builds a workload's statement lines to its head, before,
// then makes USD-0's say 7.00 more credits than the log: rows a rebuild
// replaces.
func corruptedUSD0(t *testing.T) (e *env, before uint64) {
	e = newEnv(t)
	before = e.runWorkload(40, 23)
	built := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	waitFor(t, built, before)
	built.stop()
	tag, err := e.pool.Exec(t.Context(), `UPDATE movements m SET credits_posted = m.credits_posted + 7
		FROM movement_heads h WHERE h.ledger = $1 AND h.account = 'USD-0'
			AND m.ledger_no = h.ledger_no AND m.account_no = h.opened_position`, e.ledger)
	testenv.NoError(t, err)
	if tag.RowsAffected() == 0 {
		t.Fatal("USD-0 has no lines to corrupt")
	}
	return e, before
}
