package daemon_test

import (
	"testing"

	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// fromMemory reads ledger_query_balances_from_memory_total from h's /metrics.
func fromMemory(t *testing.T, h *harness) int {
	t.Helper()
	n := metricValue(t, h, "ledger_query_balances_from_memory_total")
	if n < 0 {
		t.Fatal("/metrics lacks ledger_query_balances_from_memory_total")
	}
	return int(n)
}

// TestBalancesFromMemory: ledgerd, which projects the ledger, answers
// GetBalances from the movements projection's memory once a first read has
// asked for it and the accounts have moved since, and the answer is the read
// model's: the same as the statement lines say as of its position. A
// call naming an account that does not exist reads the read model, which
// leaves it out.
func TestBalancesFromMemory(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	// The first read asks for them: the projection keeps balances in memory
	// from then on, for the accounts its batches move.
	first, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"},
		MinPosition: h.head(t, ledger)})
	testenv.NoError(t, err)
	if len(first.GetBalances()) != 1 {
		t.Fatalf("the first read: %d answers, want 1", len(first.GetBalances()))
	}
	h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.25", "USD"))
	h.transferOK(t, ledger, transfer("t2", "bob", "carol", "0.50", "USD"))
	pos := h.transferOK(t, ledger, transfer("t3", "alice", "carol", "2.00", "USD"))
	accounts := []string{"carol", "alice", "bob", "alice"}

	before := fromMemory(t, h)
	got, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts, MinPosition: pos})
	testenv.NoError(t, err)
	if n := fromMemory(t, h) - before; n != 1 {
		t.Fatalf("%d calls answered from memory, want 1", n)
	}
	if got.GetPosition() < pos {
		t.Fatalf("answered at %d, min_position %d", got.GetPosition(), pos)
	}
	want, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts,
		AsOfPosition: got.GetPosition()})
	testenv.NoError(t, err)
	if diff := cmp.Diff(want.GetBalances(), got.GetBalances(), protocmp.Transform()); diff != "" {
		t.Fatalf("from memory (+) against the statement lines as of %d (-):\n%s", got.GetPosition(), diff)
	}
	if c := got.GetBalances()[0]; c.GetCreditsPosted() != "2.50" || c.GetBalance() != "2.50" || c.GetPosition() != pos {
		t.Fatalf("carol from memory: %v, want 2.50 credited, last moved at %d", c, pos)
	}

	before = fromMemory(t, h)
	some, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice", "nobody"},
		MinPosition: pos})
	testenv.NoError(t, err)
	if n := fromMemory(t, h) - before; n != 0 {
		t.Fatalf("%d calls naming an account that does not exist answered from memory, want 0", n)
	}
	if len(some.GetBalances()) != 1 || some.GetBalances()[0].GetAccount() != "alice" {
		t.Fatalf("alice and nobody: %v, want alice alone", some.GetBalances())
	}
}
