package daemon_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

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
// GetBalances from the movements projection's memory once a read has asked
// for it (the projection runs, lazily started by the ledger's first append)
// and the accounts have moved since, and the answer is the read model's:
// the same as the statement lines say as of its position. A call naming an
// account that does not exist reads the read model, which leaves it out.
func TestBalancesFromMemory(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	accounts := []string{"carol", "alice", "bob", "alice"}
	var (
		got *ledgerv1.GetBalancesResponse
		pos uint64
	)
	for i := 0; ; i++ {
		// Each round moves every account asked for, then reads them: the
		// first read the projection serves marks them wanted, and the
		// batches after it keep them.
		if i == 50 {
			t.Fatalf("none of %d reads answered from memory", i)
		}
		pos = h.transferOK(t, ledger, &ledgerv1.Transfer{Id: fmt.Sprint("t", i), Postings: []*ledgerv1.Posting{
			{DebitAccount: "alice", CreditAccount: "bob", Amount: "1.25", Asset: "USD"},
			{DebitAccount: "bob", CreditAccount: "carol", Amount: "0.50", Asset: "USD"}}})
		before := fromMemory(t, h)
		var err error
		got, err = h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts, MinPosition: pos})
		testenv.NoError(t, err)
		if n := fromMemory(t, h) - before; n > 1 {
			t.Fatalf("%d calls answered from memory, want at most 1", n)
		} else if n == 1 {
			break
		}
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
	if c := got.GetBalances()[0]; c.GetPosition() != pos || c.GetCreditsPosted() == "0.00" {
		t.Fatalf("carol from memory: %v, want credited, last moved at %d", c, pos)
	}

	before := fromMemory(t, h)
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
