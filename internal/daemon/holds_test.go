package daemon_test

import (
	"fmt"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of double-entry semantics: multi-leg transfers, holds,
// bounds, account life cycle and reversals, through gRPC on a real ledgerd.

func TestMultiLegFXAllOrNothing(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, usdAccount("fx:usd", nil, nil),
		&ledgerv1.Account{Id: "fx:eur", Asset: "EUR", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})...)
	accounts := []string{"alice", "bob", "carol", "fx:usd", "fx:eur", "eve:eur"}
	// alice buys 9.00 EUR for 10.00 USD and pays a 0.50 USD fee to bob.
	fx := func(id string, third *ledgerv1.Posting) *ledgerv1.Transfer {
		return &ledgerv1.Transfer{Id: id, Postings: []*ledgerv1.Posting{
			posting("alice", "fx:usd", "10.00", "USD"),
			posting("fx:eur", "eve:eur", "9.00", "EUR"),
			third,
		}}
	}
	head := h.head(t, ledger)
	before := h.balances(t, ledger, head, accounts...)

	bad := h.transfers(t, ledger,
		fx("fx1", posting("alice", "nobody", "0.50", "USD")),
		fx("fx2", posting("carol", "bob", "0.50", "USD")), // carol has min 0 and nothing
		fx("fx3", posting("alice", "eve:eur", "0.50", "USD")),
		fx("fx4", posting("alice", "bob", "0.501", "USD")),
	)
	checkResults(t, "bad third leg", bad,
		want{codeAccountNotFound, "postings[2].credit_account"},
		want{codeBelowMin, "postings"},
		want{codeAssetMismatch, "postings[2].credit_account"},
		want{codeInvalidAmount, "postings[2].amount"})
	if after := h.head(t, ledger); after != head {
		t.Fatalf("log head moved from %d to %d on refused transfers", head, after)
	}
	after := h.balances(t, ledger, head, accounts...)
	for _, id := range accounts {
		if summary(after[id]) != summary(before[id]) || summary(after[id]) != zero {
			t.Errorf("%s after refused transfers: %q, want %q", id, summary(after[id]), zero)
		}
	}

	pos := h.transferOK(t, ledger, fx("fx5", posting("alice", "bob", "0.50", "USD")))
	h.checkBalances(t, "after the FX transfer", ledger, pos, map[string]string{
		"alice":   "-10.50 -10.50 | 10.50/0.00 | 0.00/0.00",
		"bob":     "0.50 0.50 | 0.00/0.50 | 0.00/0.00",
		"fx:usd":  "10.00 10.00 | 0.00/10.00 | 0.00/0.00",
		"fx:eur":  "-9.00 -9.00 | 9.00/0.00 | 0.00/0.00",
		"eve:eur": "9.00 9.00 | 0.00/9.00 | 0.00/0.00",
		"carol":   zero,
	})

	// Legs of one transfer are checked together: carol, who may not go below
	// 0, is paid and pays on in one transfer.
	pos = h.transferOK(t, ledger, &ledgerv1.Transfer{Id: "relay", Postings: []*ledgerv1.Posting{
		posting("alice", "carol", "2.00", "USD"), posting("carol", "bob", "2.00", "USD")}})
	h.checkBalances(t, "after the relay through carol", ledger, pos, map[string]string{
		"carol": "0.00 0.00 | 2.00/2.00 | 0.00/0.00",
		"bob":   "2.50 2.50 | 0.00/2.50 | 0.00/0.00",
	})
}

func TestTwoPhase(t *testing.T) {
	t.Parallel()
	h := start(t)

	t.Run("post in full", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		pos := h.transferOK(t, ledger, pendingTransfer("p1", "alice", "bob", "10.00", "USD", 0))
		h.checkBalances(t, "held", ledger, pos, map[string]string{
			"alice": "0.00 -10.00 | 0.00/0.00 | 10.00/0.00",
			"bob":   "0.00 0.00 | 0.00/0.00 | 0.00/10.00",
		})
		rs := h.post(t, ledger, &ledgerv1.PostPending{Id: "p1:post", PendingId: "p1"})
		checkResults(t, "post", rs, want{code: codeCreated})
		posted := rs[0].GetPosition()
		h.checkBalances(t, "posted", ledger, posted, map[string]string{
			"alice": "-10.00 -10.00 | 10.00/0.00 | 0.00/0.00",
			"bob":   "10.00 10.00 | 0.00/10.00 | 0.00/0.00",
		})

		// A hold resolves once; its post's id stays idempotent.
		checkResults(t, "second post", h.post(t, ledger, &ledgerv1.PostPending{Id: "p1:post2", PendingId: "p1"}),
			want{codeAlreadyResolved, "pending_id"})
		checkResults(t, "void after post", h.void(t, ledger, &ledgerv1.VoidPending{Id: "p1:void", PendingId: "p1"}),
			want{codeAlreadyResolved, "pending_id"})
		retry := h.post(t, ledger, &ledgerv1.PostPending{Id: "p1:post", PendingId: "p1"})
		if r := retry[0]; r.GetCode() != codeExists || r.GetPosition() != posted {
			t.Errorf("retried post: %s at %d, want EXISTS at %d", r.GetCode(), r.GetPosition(), posted)
		}
		if head := h.head(t, ledger); head != posted {
			t.Errorf("log head %d after refused resolutions, want %d", head, posted)
		}
	})

	t.Run("post in part", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		pos := h.transferOK(t, ledger, &ledgerv1.Transfer{Id: "p2", Pending: true, Postings: []*ledgerv1.Posting{
			posting("alice", "bob", "10.00", "USD"), posting("alice", "carol", "4.00", "USD")}})
		h.checkBalances(t, "held", ledger, pos, map[string]string{
			"alice": "0.00 -14.00 | 0.00/0.00 | 14.00/0.00",
			"bob":   "0.00 0.00 | 0.00/0.00 | 0.00/10.00",
			"carol": "0.00 0.00 | 0.00/0.00 | 0.00/4.00",
		})
		checkResults(t, "refused posts", h.post(t, ledger,
			&ledgerv1.PostPending{Id: "p2:over", PendingId: "p2", Amounts: []string{"10.01", "0"}},
			&ledgerv1.PostPending{Id: "p2:count", PendingId: "p2", Amounts: []string{"1.00"}},
			&ledgerv1.PostPending{Id: "p2:unknown", PendingId: "nope"},
		),
			want{codeExceedsPending, "amounts[0]"},
			want{codeInvalidField, "amounts"},
			want{codePendingNotFound, "pending_id"})

		rs := h.post(t, ledger, &ledgerv1.PostPending{Id: "p2:post", PendingId: "p2", Amounts: []string{"6.00", "0"}})
		checkResults(t, "partial post", rs, want{code: codeCreated})
		h.checkBalances(t, "posted in part, the rest released", ledger, rs[0].GetPosition(), map[string]string{
			"alice": "-6.00 -6.00 | 6.00/0.00 | 0.00/0.00",
			"bob":   "6.00 6.00 | 0.00/6.00 | 0.00/0.00",
			"carol": zero,
		})
		checkResults(t, "post of the released rest", h.post(t, ledger,
			&ledgerv1.PostPending{Id: "p2:rest", PendingId: "p2", Amounts: []string{"4.00", "4.00"}}),
			want{codeAlreadyResolved, "pending_id"})
	})

	t.Run("void", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		h.transferOK(t, ledger, pendingTransfer("p3", "alice", "bob", "3.00", "USD", 3600))
		rs := h.void(t, ledger, &ledgerv1.VoidPending{Id: "p3:void", PendingId: "p3"})
		checkResults(t, "void", rs, want{code: codeCreated})
		h.checkBalances(t, "voided", ledger, rs[0].GetPosition(), map[string]string{"alice": zero, "bob": zero})
		checkResults(t, "post after void", h.post(t, ledger, &ledgerv1.PostPending{Id: "p3:post", PendingId: "p3"}),
			want{codeAlreadyResolved, "pending_id"})
		// A posted transfer was never pending.
		h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD"))
		checkResults(t, "post of a posted transfer", h.post(t, ledger, &ledgerv1.PostPending{Id: "t1:post", PendingId: "t1"}),
			want{codePendingNotFound, "pending_id"})
	})

	t.Run("expires", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		pos := h.transferOK(t, ledger, pendingTransfer("p4", "alice", "bob", "5.00", "USD", 1))
		h.checkBalances(t, "held", ledger, pos, map[string]string{
			"alice": "0.00 -5.00 | 0.00/0.00 | 5.00/0.00",
			"bob":   "0.00 0.00 | 0.00/0.00 | 0.00/5.00",
		})
		testenv.Eventually(t, 10*time.Second, func() error {
			b := h.balances(t, ledger, pos, "alice", "bob")
			if summary(b["alice"]) != zero || summary(b["bob"]) != zero {
				return fmt.Errorf("alice %q, bob %q: still held", summary(b["alice"]), summary(b["bob"]))
			}
			return nil
		})
		checkResults(t, "post after expiry", h.post(t, ledger, &ledgerv1.PostPending{Id: "p4:post", PendingId: "p4"}),
			want{codePendingExpired, "pending_id"})
		checkResults(t, "void after expiry", h.void(t, ledger, &ledgerv1.VoidPending{Id: "p4:void", PendingId: "p4"}),
			want{codePendingExpired, "pending_id"})
		if n := h.countEvents(t, ledger, "PendingExpired", "p4"); n != 1 {
			t.Errorf("%d PendingExpired events for p4, want 1", n)
		}
	})

	t.Run("min balance blocks a hold", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		h.transferOK(t, ledger, transfer("fund", "bob", "carol", "5.00", "USD"))
		checkResults(t, "holds over the balance", h.transfers(t, ledger,
			pendingTransfer("h1", "carol", "bob", "5.01", "USD", 0),
			pendingTransfer("h2", "carol", "bob", "5.00", "USD", 0),
			pendingTransfer("h3", "carol", "bob", "0.01", "USD", 0),
			transfer("t1", "carol", "bob", "0.01", "USD"),
		),
			want{codeBelowMin, "postings"},
			want{code: codeCreated},
			want{codeBelowMin, "postings"},
			want{codeBelowMin, "postings"})
		h.checkBalances(t, "held to the last cent", ledger, h.head(t, ledger), map[string]string{
			"carol": "5.00 0.00 | 0.00/5.00 | 5.00/0.00",
		})
		rs := h.void(t, ledger, &ledgerv1.VoidPending{Id: "h2:void", PendingId: "h2"})
		checkResults(t, "void", rs, want{code: codeCreated})
		h.checkBalances(t, "released", ledger, rs[0].GetPosition(), map[string]string{
			"carol": "5.00 5.00 | 0.00/5.00 | 0.00/0.00",
		})
	})
}

func TestSetAccountBounds(t *testing.T) {
	t.Parallel()
	h := start(t)

	t.Run("tighten min below an overdraft", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		h.transferOK(t, ledger, transfer("od", "alice", "bob", "50.00", "USD"))
		rs := h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "alice", MinBalance: ptr("0")})
		checkResults(t, "tighten", rs, want{code: codeCreated})
		h.checkBalances(t, "still overdrawn", ledger, rs[0].GetPosition(), map[string]string{
			"alice": "-50.00 -50.00 | 50.00/0.00 | 0.00/0.00",
		})
		head := h.head(t, ledger)
		checkResults(t, "further outflows", h.transfers(t, ledger,
			transfer("out", "alice", "bob", "0.01", "USD"),
			pendingTransfer("hold", "alice", "bob", "0.01", "USD", 0)),
			want{codeBelowMin, "postings"}, want{codeBelowMin, "postings"})
		if after := h.head(t, ledger); after != head {
			t.Errorf("log head moved from %d to %d on refused outflows", head, after)
		}
		pos := h.transferOK(t, ledger, transfer("in", "bob", "alice", "10.00", "USD"))
		h.checkBalances(t, "after an inflow", ledger, pos, map[string]string{
			"alice": "-40.00 -40.00 | 50.00/10.00 | 0.00/0.00",
		})
		// Absent bounds are no bounds.
		checkResults(t, "loosen", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "alice"}), want{code: codeCreated})
		h.transferOK(t, ledger, transfer("out2", "alice", "bob", "1.00", "USD"))
		checkResults(t, "bad bounds", h.setBounds(t, ledger,
			&ledgerv1.AccountBounds{AccountId: "alice", MinBalance: ptr("10"), MaxBalance: ptr("5")},
			&ledgerv1.AccountBounds{AccountId: "nobody", MinBalance: ptr("0")},
			&ledgerv1.AccountBounds{AccountId: "alice", MinBalance: ptr("0.001")}),
			want{codeInvalidField, "max_balance"},
			want{codeAccountNotFound, "account_id"},
			want{codeInvalidAmount, "min_balance"})
	})

	t.Run("max counts pending inflows", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		mustCreated(t, h.open(t, ledger, usdAccount("capped", nil, ptr("100.00")))...)
		checkResults(t, "inflows", h.transfers(t, ledger,
			transfer("in1", "bob", "capped", "60.00", "USD"),
			pendingTransfer("in2", "bob", "capped", "30.00", "USD", 0),
			transfer("in3", "bob", "capped", "20.00", "USD"),
			pendingTransfer("in4", "bob", "capped", "10.01", "USD", 0),
			transfer("in5", "bob", "capped", "10.00", "USD"),
			transfer("in6", "bob", "capped", "0.01", "USD"),
		),
			want{code: codeCreated}, want{code: codeCreated},
			want{codeAboveMax, "postings"}, want{codeAboveMax, "postings"},
			want{code: codeCreated}, want{codeAboveMax, "postings"})
		h.checkBalances(t, "at the cap", ledger, h.head(t, ledger), map[string]string{
			"capped": "70.00 70.00 | 0.00/70.00 | 0.00/30.00",
		})
		// Outflows are always allowed; a raised bound lets inflows in again.
		h.transferOK(t, ledger, transfer("out", "capped", "bob", "5.00", "USD"))
		checkResults(t, "raise", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "capped", MaxBalance: ptr("200.00")}),
			want{code: codeCreated})
		pos := h.transferOK(t, ledger, transfer("in7", "bob", "capped", "20.00", "USD"))
		h.checkBalances(t, "after the raise", ledger, pos, map[string]string{
			"capped": "85.00 85.00 | 5.00/90.00 | 0.00/30.00",
		})
		// Lowered below what it holds: it stays, but takes no more in.
		checkResults(t, "lower", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "capped", MaxBalance: ptr("50.00")}),
			want{code: codeCreated})
		checkResults(t, "over the lowered bound", h.transfers(t, ledger,
			transfer("in8", "bob", "capped", "0.01", "USD"),
			transfer("out2", "capped", "bob", "1.00", "USD")),
			want{codeAboveMax, "postings"}, want{code: codeCreated})
	})

	// A debit-normal account grows with debits: its outflows are credits.
	t.Run("debit-normal account", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		mustCreated(t, h.open(t, ledger, &ledgerv1.Account{Id: "cash", Asset: "USD",
			NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT, MinBalance: ptr("0"), MaxBalance: ptr("10.00")})...)
		checkResults(t, "moves", h.transfers(t, ledger,
			transfer("in1", "cash", "alice", "10.00", "USD"),
			transfer("in2", "cash", "alice", "0.01", "USD"),
			pendingTransfer("out1", "bob", "cash", "10.00", "USD", 0),
			pendingTransfer("out2", "bob", "cash", "0.01", "USD", 0),
		),
			want{code: codeCreated}, want{codeAboveMax, "postings"},
			want{code: codeCreated}, want{codeBelowMin, "postings"})
		h.checkBalances(t, "cash", ledger, h.head(t, ledger), map[string]string{
			"cash": "10.00 0.00 | 10.00/0.00 | 0.00/10.00",
		})
	})
}

func TestCloseAccountsAndMetadata(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, usdAccount("dave", nil, nil), usdAccount("erin", nil, nil))...)

	rs := h.closeAccounts(t, ledger, "dave")
	checkResults(t, "close", rs, want{code: codeCreated})
	closedAt := rs[0].GetPosition()
	checkResults(t, "transfers touching a closed account", h.transfers(t, ledger,
		transfer("t1", "alice", "dave", "1.00", "USD"),
		transfer("t2", "dave", "alice", "1.00", "USD"),
		pendingTransfer("t3", "alice", "dave", "1.00", "USD", 0)),
		want{codeAccountClosed, "postings[0].credit_account"},
		want{codeAccountClosed, "postings[0].debit_account"},
		want{codeAccountClosed, "postings[0].credit_account"})
	again := h.closeAccounts(t, ledger, "dave", "nobody")
	checkResults(t, "close again", again, want{code: codeExists}, want{codeAccountNotFound, "account_id"})
	if again[0].GetPosition() != closedAt {
		t.Errorf("close again: EXISTS at %d, want %d", again[0].GetPosition(), closedAt)
	}

	h.transferOK(t, ledger, pendingTransfer("hold", "alice", "erin", "2.00", "USD", 0))
	checkResults(t, "close with pending", h.closeAccounts(t, ledger, "erin", "alice"),
		want{codeHasPending, "account_id"}, want{codeHasPending, "account_id"})
	checkResults(t, "void", h.void(t, ledger, &ledgerv1.VoidPending{Id: "hold:void", PendingId: "hold"}), want{code: codeCreated})
	checkResults(t, "close without pending", h.closeAccounts(t, ledger, "erin"), want{code: codeCreated})

	meta := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = "v"
		}
		return m
	}
	resp, err := h.cmd.SetAccountMetadata(ctx(t), &ledgerv1.SetAccountMetadataRequest{Ledger: ledger, Accounts: []*ledgerv1.AccountMetadata{
		{AccountId: "alice", Metadata: meta(33)},
		{AccountId: "alice", Metadata: meta(32)},
		{AccountId: "dave", Metadata: meta(1)},
	}})
	testenv.NoError(t, err)
	checkResults(t, "metadata", resp.GetResults(),
		want{codeInvalidField, "metadata"}, want{code: codeCreated}, want{codeAccountClosed, "account_id"})
	checkResults(t, "bounds of a closed account", h.setBounds(t, ledger, &ledgerv1.AccountBounds{AccountId: "dave"}),
		want{codeAccountClosed, "account_id"})
}

func TestReversals(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)

	h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	full := h.reverse(t, ledger, &ledgerv1.Reversal{Id: "t1:rev", TransferId: "t1"})
	checkResults(t, "full reversal", full, want{code: codeCreated})
	h.checkBalances(t, "reversed in full", ledger, full[0].GetPosition(), map[string]string{
		"alice": "0.00 0.00 | 10.00/10.00 | 0.00/0.00",
		"bob":   "0.00 0.00 | 10.00/10.00 | 0.00/0.00",
	})
	retry := h.reverse(t, ledger, &ledgerv1.Reversal{Id: "t1:rev", TransferId: "t1"})
	if r := retry[0]; r.GetCode() != codeExists || r.GetPosition() != full[0].GetPosition() {
		t.Errorf("retried reversal: %s at %d, want EXISTS at %d", r.GetCode(), r.GetPosition(), full[0].GetPosition())
	}

	// Two postings, reversed in parts that add up to the whole.
	h.transferOK(t, ledger, &ledgerv1.Transfer{Id: "t2", Postings: []*ledgerv1.Posting{
		posting("alice", "bob", "10.00", "USD"), posting("alice", "carol", "4.00", "USD")}})
	checkResults(t, "partial reversals", h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "t2:r1", TransferId: "t2", Amounts: []string{"3.00", "4.00"}},
		&ledgerv1.Reversal{Id: "t2:r2", TransferId: "t2", Amounts: []string{"7.01", "0"}},
		&ledgerv1.Reversal{Id: "t2:r3", TransferId: "t2", Amounts: []string{"7.00", "0"}},
		&ledgerv1.Reversal{Id: "t2:r4", TransferId: "t2", Amounts: []string{"0.01", "0"}},
		&ledgerv1.Reversal{Id: "t2:r5", TransferId: "t2"},
	),
		want{code: codeCreated},
		want{codeExceedsRemaining, "amounts[0]"},
		want{code: codeCreated},
		want{codeAlreadyReversed, "transfer_id"}, // nothing left: whatever the amounts
		want{codeAlreadyReversed, "transfer_id"})
	h.checkBalances(t, "reversed in parts", ledger, h.head(t, ledger), map[string]string{
		"alice": "0.00 0.00 | 24.00/24.00 | 0.00/0.00",
		"bob":   "0.00 0.00 | 20.00/20.00 | 0.00/0.00",
		"carol": "0.00 0.00 | 4.00/4.00 | 0.00/0.00",
	})

	// A hold is not reversible until posted; its post is.
	h.transferOK(t, ledger, pendingTransfer("p1", "alice", "bob", "5.00", "USD", 0))
	checkResults(t, "bad reversals", h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "p1:rev", TransferId: "p1"},
		&ledgerv1.Reversal{Id: "nope:rev", TransferId: "nope"},
		&ledgerv1.Reversal{Id: "t1:rev2", TransferId: "t1:rev"}, // a reversal is not reversed
	),
		want{codeNotReversible, "transfer_id"},
		want{codeTransferNotFound, "transfer_id"},
		want{codeNotReversible, "transfer_id"})
	checkResults(t, "post", h.post(t, ledger, &ledgerv1.PostPending{Id: "p1:post", PendingId: "p1", Amounts: []string{"4.00"}}),
		want{code: codeCreated})
	checkResults(t, "reverse the post, over", h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "p1:post:r1", TransferId: "p1:post", Amounts: []string{"4.01"}}),
		want{codeExceedsRemaining, "amounts[0]"})
	rs := h.reverse(t, ledger, &ledgerv1.Reversal{Id: "p1:post:r2", TransferId: "p1:post"})
	checkResults(t, "reverse the post", rs, want{code: codeCreated})
	h.checkBalances(t, "post reversed", ledger, rs[0].GetPosition(), map[string]string{
		"alice": "0.00 0.00 | 28.00/28.00 | 0.00/0.00",
		"bob":   "0.00 0.00 | 24.00/24.00 | 0.00/0.00",
	})

	// A reversal is checked against bounds like any transfer: carol spent
	// what she was paid, so it cannot be taken back past her min of 0.
	h.transferOK(t, ledger, transfer("t3", "alice", "carol", "5.00", "USD"))
	h.transferOK(t, ledger, transfer("t4", "carol", "bob", "5.00", "USD"))
	checkResults(t, "reversal past a bound", h.reverse(t, ledger, &ledgerv1.Reversal{Id: "t3:rev", TransferId: "t3"}),
		want{codeBelowMin, "postings"})
}
