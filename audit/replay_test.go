package audit_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/internal/testenv"
)

// served is a balance as GetBalances serves it, in the replay's form.
func served(b *ledgerv1.Balance) audit.Balance {
	normal := map[ledgerv1.NormalBalance]string{ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT: "credit",
		ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT: "debit"}[b.GetNormalBalance()]
	return audit.Balance{Account: b.GetAccount(), Asset: b.GetAsset(), NormalBalance: normal,
		DebitsPosted: b.GetDebitsPosted(), CreditsPosted: b.GetCreditsPosted(), DebitsPending: b.GetDebitsPending(),
		CreditsPending: b.GetCreditsPending(), Balance: b.GetBalance(), Available: b.GetAvailable(), Position: b.GetPosition()}
}

func withoutClosed(bs []audit.Balance) []audit.Balance {
	out := make([]audit.Balance, len(bs))
	for i, b := range bs {
		b.Closed = false // GetBalances does not say
		out[i] = b
	}
	return out
}

// allAccounts lists every account the workload opens.
func allAccounts(w *workload) []string {
	var ids []string
	for _, code := range []string{"EUR", "JPY", "USD"} {
		ids = append(ids, w.accounts[code]...)
	}
	return ids
}

func TestReplayEqualsProjectionsAsOf(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 7)
	w.run(150)
	w.expire(1)
	head := h.head(t, ledger)
	rng := rand.New(rand.NewPCG(7, 7))
	points := []uint64{1, 3, 4, head}
	for range 8 {
		points = append(points, 1+rng.Uint64N(head))
	}
	for _, p := range points {
		snap, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Position: p})
		testenv.NoError(t, err)
		if snap.Position != p || snap.Ledger != ledger || len(snap.Hash) != 64 {
			t.Fatalf("replay at %d: position %d, ledger %q, hash %q", p, snap.Position, snap.Ledger, snap.Hash)
		}
		resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: allAccounts(w), AsOfPosition: p})
		testenv.NoError(t, err)
		want := map[string]audit.Balance{}
		for _, b := range resp.GetBalances() {
			want[b.GetAccount()] = served(b)
		}
		got := map[string]audit.Balance{}
		for _, b := range withoutClosed(snap.Balances) {
			got[b.Account] = b
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("replay at %d differs from GetBalances as of it (-served +replayed):\n%s", p, diff)
		}
		tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, AsOfPosition: p})
		testenv.NoError(t, err)
		var wantTB []audit.TrialBalanceLine
		for _, l := range tb.GetLines() {
			wantTB = append(wantTB, audit.TrialBalanceLine{Asset: l.GetAsset(), DebitsPosted: l.GetDebitsPosted(),
				CreditsPosted: l.GetCreditsPosted(), DebitsPending: l.GetDebitsPending(), CreditsPending: l.GetCreditsPending(),
				Accounts: l.GetAccounts(), AccountsClosed: l.GetAccountsClosed()})
		}
		gotTB := make([]audit.TrialBalanceLine, len(snap.TrialBalance))
		for i, l := range snap.TrialBalance {
			l.Position = 0 // the query does not say
			gotTB[i] = l
		}
		if diff := cmp.Diff(wantTB, gotTB); diff != "" {
			t.Errorf("replay at %d differs from the trial balance as of it (-served +replayed):\n%s", p, diff)
		}
	}

	// At a time: the last event recorded at or before it.
	for range 4 {
		p := 1 + rng.Uint64N(head)
		var at time.Time
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT recorded_at FROM events WHERE ledger = $1 AND position = $2`,
			ledger, int64(p)).Scan(&at))
		var last int64
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT max(position) FROM events WHERE ledger = $1 AND recorded_at <= $2`,
			ledger, at).Scan(&last))
		snap, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Time: at})
		testenv.NoError(t, err)
		if snap.Position != uint64(last) || !snap.RecordedAt.Equal(at) {
			t.Errorf("replay at %s: position %d recorded %s, want %d", at, snap.Position, snap.RecordedAt, last)
		}
		resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: allAccounts(w),
			AsOfTime: timestamppb.New(at)})
		testenv.NoError(t, err)
		got := map[string]audit.Balance{}
		for _, b := range withoutClosed(snap.Balances) {
			got[b.Account] = b
		}
		for _, b := range resp.GetBalances() {
			if diff := cmp.Diff(served(b), got[b.GetAccount()]); diff != "" {
				t.Errorf("replay at %s, %s (-served +replayed):\n%s", at, b.GetAccount(), diff)
			}
		}
	}

	// Before the first event: nothing. Past the head: refused.
	snap, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Time: time.Unix(0, 0)})
	testenv.NoError(t, err)
	if snap.Position != 0 || len(snap.Balances) != 0 || len(snap.TrialBalance) != 0 {
		t.Errorf("replay before the first event: %+v", snap)
	}
	if _, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{Position: head + 1}); !errors.Is(err, audit.ErrBeyondHead) {
		t.Errorf("replay past the head: %v, want ErrBeyondHead", err)
	}
	// The store and ledgerd agree, at the head.
	a, err := audit.Replay(ctx(t), h.serviceLog(ledger), audit.At{})
	testenv.NoError(t, err)
	b, err := audit.Replay(ctx(t), h.storeLog(ledger), audit.At{})
	testenv.NoError(t, err)
	if diff := cmp.Diff(a, b); diff != "" || a.Position != head {
		t.Errorf("replays at the head, at %d (-ledgerd +store):\n%s", a.Position, diff)
	}
}
