package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of batches: all-or-nothing requests, items that see the
// effects of earlier ones, the size bound, returned balances, and many
// clients racing for one account.

func TestAtomicBatch(t *testing.T) {
	t.Parallel()
	h := start(t)
	cases := []struct {
		name   string
		second *ledgerv1.Transfer // item 2 of 4, the one that fails
		want   want
	}{
		{"unknown account", transfer("t2", "alice", "nobody", "1.00", "USD"), want{codeAccountNotFound, "postings[0].credit_account"}},
		{"below min balance", transfer("t2", "carol", "bob", "1.00", "USD"), want{codeBelowMin, "postings"}},
		{"malformed amount", transfer("t2", "alice", "bob", "0", "USD"), want{codeInvalidAmount, "postings[0].amount"}},
		{"too many decimals", transfer("t2", "alice", "bob", "1.001", "USD"), want{codeInvalidAmount, "postings[0].amount"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ledger := testenv.Name(t)
			h.setup(t, ledger)
			batch := []*ledgerv1.Transfer{
				transfer("t1", "alice", "bob", "1.00", "USD"),
				c.second,
				transfer("t3", "bob", "carol", "0.50", "USD"),
				transfer("t4", "carol", "alice", "0.25", "USD"), // needs t3's funds
			}
			head := h.head(t, ledger)
			resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: batch, Atomic: true})
			testenv.NoError(t, err)
			checkResults(t, "atomic", resp.GetResults(), want{code: codeLinkedFailed}, c.want,
				want{code: codeLinkedFailed}, want{code: codeLinkedFailed})
			for i, r := range resp.GetResults() {
				if i != 1 && r.GetPosition() != 0 {
					t.Errorf("atomic: item %d has position %d, want none", i, r.GetPosition())
				}
			}
			if after := h.head(t, ledger); after != head {
				t.Fatalf("log head moved from %d to %d on a failed atomic batch", head, after)
			}
			h.checkBalances(t, "after the failed atomic batch", ledger, head,
				map[string]string{"alice": zero, "bob": zero, "carol": zero})

			rs := h.transfers(t, ledger, batch...)
			checkResults(t, "non-atomic", rs, want{code: codeCreated}, c.want, want{code: codeCreated}, want{code: codeCreated})
			if after := h.head(t, ledger); after != head+3 {
				t.Errorf("log head %d after 3 applied items, want %d", after, head+3)
			}
			h.checkBalances(t, "after the non-atomic batch", ledger, rs[3].GetPosition(), map[string]string{
				"alice": "-0.75 -0.75 | 1.00/0.25 | 0.00/0.00",
				"bob":   "0.50 0.50 | 0.50/1.00 | 0.00/0.00",
				"carol": "0.25 0.25 | 0.25/0.50 | 0.00/0.00",
			})
		})
	}
}

func TestBatchItemsSeeEarlierItems(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, usdAccount("w1", ptr("0"), nil), usdAccount("w2", ptr("0"), nil))...)

	rs := h.transfers(t, ledger,
		transfer("fund", "alice", "w1", "5.00", "USD"),
		transfer("spend1", "w1", "bob", "3.00", "USD"),
		transfer("spend2", "w1", "bob", "2.00", "USD"),
		transfer("spend3", "w1", "bob", "0.01", "USD"),
		transfer("fund", "alice", "w1", "5.00", "USD"), // the same id again: the first one's result
	)
	checkResults(t, "fund and spend", rs, want{code: codeCreated}, want{code: codeCreated}, want{code: codeCreated},
		want{codeBelowMin, "postings"}, want{code: codeExists})
	for i := 1; i < 3; i++ {
		if rs[i].GetPosition() != rs[i-1].GetPosition()+1 {
			t.Errorf("item %d at %d, item %d at %d: want consecutive positions", i-1, rs[i-1].GetPosition(), i, rs[i].GetPosition())
		}
	}
	if rs[4].GetPosition() != rs[0].GetPosition() {
		t.Errorf("repeated id: EXISTS at %d, want %d", rs[4].GetPosition(), rs[0].GetPosition())
	}
	h.checkBalances(t, "drained in one request", ledger, rs[2].GetPosition(), map[string]string{
		"w1": "0.00 0.00 | 5.00/5.00 | 0.00/0.00",
	})

	// The same in an all-or-nothing request.
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Atomic: true, Transfers: []*ledgerv1.Transfer{
		transfer("fund2", "alice", "w2", "5.00", "USD"),
		pendingTransfer("hold2", "w2", "bob", "4.00", "USD", 0),
		transfer("spend4", "w2", "bob", "1.00", "USD"),
	}})
	testenv.NoError(t, err)
	checkResults(t, "atomic fund, hold and spend", resp.GetResults(), created(3)...)
	h.checkBalances(t, "held and drained", ledger, resp.GetResults()[2].GetPosition(), map[string]string{
		"w2": "4.00 0.00 | 1.00/5.00 | 4.00/0.00",
	})
}

func TestBatchSizeBound(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)

	const itemsMax = 8192
	n := itemsMax + 1
	ts := make([]*ledgerv1.Transfer, n)
	for i := range ts {
		ts[i] = transfer(fmt.Sprintf("t%d", i), "alice", "bob", "0.01", "USD")
	}
	posts, voids, revs := make([]*ledgerv1.PostPending, n), make([]*ledgerv1.VoidPending, n), make([]*ledgerv1.Reversal, n)
	bounds, metas, ids := make([]*ledgerv1.AccountBounds, n), make([]*ledgerv1.AccountMetadata, n), make([]string, n)
	accounts := make([]*ledgerv1.Account, n)
	for i := range n {
		id := fmt.Sprintf("x%d", i)
		posts[i] = &ledgerv1.PostPending{Id: id, PendingId: "p"}
		voids[i] = &ledgerv1.VoidPending{Id: id, PendingId: "p"}
		revs[i] = &ledgerv1.Reversal{Id: id, TransferId: "t"}
		bounds[i] = &ledgerv1.AccountBounds{AccountId: "alice"}
		metas[i] = &ledgerv1.AccountMetadata{AccountId: "alice"}
		ids[i] = id
		accounts[i] = usdAccount(id, nil, nil)
	}
	calls := []struct {
		field string
		call  func(context.Context) error
	}{
		{"transfers", func(c context.Context) error {
			_, err := h.cmd.CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts, Atomic: true})
			return err
		}},
		{"posts", func(c context.Context) error {
			_, err := h.cmd.PostPendingTransfers(c, &ledgerv1.PostPendingTransfersRequest{Ledger: ledger, Posts: posts})
			return err
		}},
		{"voids", func(c context.Context) error {
			_, err := h.cmd.VoidPendingTransfers(c, &ledgerv1.VoidPendingTransfersRequest{Ledger: ledger, Voids: voids})
			return err
		}},
		{"reversals", func(c context.Context) error {
			_, err := h.cmd.ReverseTransfers(c, &ledgerv1.ReverseTransfersRequest{Ledger: ledger, Reversals: revs})
			return err
		}},
		{"bounds", func(c context.Context) error {
			_, err := h.cmd.SetAccountBounds(c, &ledgerv1.SetAccountBoundsRequest{Ledger: ledger, Bounds: bounds})
			return err
		}},
		{"accounts", func(c context.Context) error {
			_, err := h.cmd.SetAccountMetadata(c, &ledgerv1.SetAccountMetadataRequest{Ledger: ledger, Accounts: metas})
			return err
		}},
		{"account_ids", func(c context.Context) error {
			_, err := h.cmd.CloseAccounts(c, &ledgerv1.CloseAccountsRequest{Ledger: ledger, AccountIds: ids})
			return err
		}},
		{"accounts", func(c context.Context) error { // OpenAccounts
			_, err := h.cmd.OpenAccounts(c, &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: accounts})
			return err
		}},
	}
	for _, c := range calls {
		err := c.call(ctx(t))
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("%d %s: %v (field %q), want InvalidArgument naming it", n, c.field, err, fieldOf(st))
		}
	}
	if after := h.head(t, ledger); after != head {
		t.Fatalf("log head moved from %d to %d on over-sized requests", head, after)
	}

	// At the bound, everything goes through.
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts[:itemsMax], Atomic: true})
	testenv.NoError(t, err)
	checkResults(t, "8,192 items", resp.GetResults(), created(itemsMax)...)
	if after := h.head(t, ledger); after != head+itemsMax {
		t.Errorf("log head %d after %d items, want %d", after, itemsMax, head+itemsMax)
	}
	h.checkBalances(t, "after 8,192 items", ledger, head+itemsMax, map[string]string{
		"bob": "81.92 81.92 | 0.00/81.92 | 0.00/0.00",
	})
}

func TestReturnBalances(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, &ledgerv1.Account{Id: "bank:eur", Asset: "EUR", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT})...)

	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, ReturnBalances: true, Transfers: []*ledgerv1.Transfer{
		transfer("t1", "alice", "bob", "10.00", "USD"),
		transfer("t2", "bob", "carol", "4.00", "USD"),
		transfer("t3", "alice", "nobody", "1.00", "USD"),
		pendingTransfer("t4", "carol", "alice", "1.50", "USD", 0),
		{Id: "t5", Postings: []*ledgerv1.Posting{posting("bank:eur", "eve:eur", "7.00", "EUR"), posting("bob", "alice", "0.10", "USD")}},
	}})
	testenv.NoError(t, err)
	rs := resp.GetResults()
	checkResults(t, "batch", rs, want{code: codeCreated}, want{code: codeCreated}, want{code: codeAccountNotFound},
		want{code: codeCreated}, want{code: codeCreated})
	wantAfter := [][]string{
		{"alice -10.00 -10.00 | 10.00/0.00 | 0.00/0.00", "bob 10.00 10.00 | 0.00/10.00 | 0.00/0.00"},
		{"bob 6.00 6.00 | 4.00/10.00 | 0.00/0.00", "carol 4.00 4.00 | 0.00/4.00 | 0.00/0.00"},
		nil,
		{"carol 4.00 2.50 | 0.00/4.00 | 1.50/0.00", "alice -10.00 -10.00 | 10.00/0.00 | 0.00/1.50"},
		{"bank:eur 7.00 7.00 | 7.00/0.00 | 0.00/0.00", "eve:eur 7.00 7.00 | 0.00/7.00 | 0.00/0.00",
			"bob 5.90 5.90 | 4.10/10.00 | 0.00/0.00", "alice -9.90 -9.90 | 10.00/0.10 | 0.00/1.50"},
	}
	last := map[string]*ledgerv1.Balance{}
	for i, r := range rs {
		var got []string
		for _, b := range r.GetBalances() {
			got = append(got, b.GetAccount()+" "+summary(b))
			last[b.GetAccount()] = b
		}
		if diff := cmp.Diff(wantAfter[i], got); diff != "" {
			t.Errorf("item %d balances (-want +got):\n%s", i, diff)
		}
	}
	final := rs[len(rs)-1].GetPosition()
	read := h.balances(t, ledger, final, "alice", "bob", "carol", "bank:eur", "eve:eur")
	for id, b := range last {
		if diff := cmp.Diff(read[id], b, protocmp.Transform(), protocmp.IgnoreFields(&ledgerv1.Balance{}, "position")); diff != "" {
			t.Errorf("%s: returned balance differs from GetBalances at %d (-read +returned):\n%s", id, final, diff)
		}
	}

	// Posts, voids and reversals return balances too.
	post, err := h.cmd.PostPendingTransfers(ctx(t), &ledgerv1.PostPendingTransfersRequest{Ledger: ledger, ReturnBalances: true,
		Posts: []*ledgerv1.PostPending{{Id: "t4:post", PendingId: "t4", Amounts: []string{"1.00"}}}})
	testenv.NoError(t, err)
	rev, err := h.cmd.ReverseTransfers(ctx(t), &ledgerv1.ReverseTransfersRequest{Ledger: ledger, ReturnBalances: true,
		Reversals: []*ledgerv1.Reversal{{Id: "t2:rev", TransferId: "t2", Amounts: []string{"2.00"}}}})
	testenv.NoError(t, err)
	for what, r := range map[string]*ledgerv1.ItemResult{"post": post.GetResults()[0], "reversal": rev.GetResults()[0]} {
		if r.GetCode() != codeCreated || len(r.GetBalances()) != 2 {
			t.Errorf("%s: %s with %d balances, want CREATED with 2", what, r.GetCode(), len(r.GetBalances()))
		}
	}
	read = h.balances(t, ledger, rev.GetResults()[0].GetPosition(), "carol", "bob")
	for _, b := range rev.GetResults()[0].GetBalances() {
		if got, want := summary(b), summary(read[b.GetAccount()]); got != want {
			t.Errorf("%s after the reversal: returned %q, read %q", b.GetAccount(), got, want)
		}
	}
}

// TestReturnBalancesCarryPosition: a returned balance says, like GetBalances,
// the position of the last event that changed the account: the item's own.
func TestReturnBalancesCarryPosition(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, ReturnBalances: true,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "1.00", "USD")}})
	testenv.NoError(t, err)
	r := resp.GetResults()[0]
	read := h.balances(t, ledger, r.GetPosition(), "alice")
	for _, b := range r.GetBalances() {
		if b.GetPosition() != r.GetPosition() || b.GetAccount() == "alice" && read["alice"].GetPosition() != b.GetPosition() {
			t.Errorf("%s returned at position %d; item at %d, GetBalances says %d", b.GetAccount(), b.GetPosition(),
				r.GetPosition(), read["alice"].GetPosition())
		}
	}
}

func TestConcurrentDrainNeverOverdraws(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	mustCreated(t, h.open(t, ledger, usdAccount("pot", ptr("0"), nil))...)
	h.transferOK(t, ledger, transfer("fund", "alice", "pot", "100.00", "USD"))

	const clients = 64
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		succeeded int
		maxPos    uint64
		failures  []string
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(format string, args ...any) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("client %d: ", c)+fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				fail("%v", err)
				return
			}
			defer conn.Close()
			cmd := ledgerv1.NewCommandServiceClient(conn)
			for n := 0; ; n++ {
				if n > 100 {
					fail("still sending after 100 transfers")
					return
				}
				resp, err := cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, ReturnBalances: true,
					Transfers: []*ledgerv1.Transfer{transfer(fmt.Sprintf("c%d:%d", c, n), "pot", "bob", "1.00", "USD")}})
				if err != nil {
					fail("%v", err)
					return
				}
				r := resp.GetResults()[0]
				switch r.GetCode() {
				case codeBelowMin:
					return
				case codeCreated:
				default:
					fail("%s %s", r.GetCode(), r.GetDetail())
					return
				}
				for _, b := range r.GetBalances() {
					if b.GetAccount() == "pot" && strings.HasPrefix(b.GetAvailable(), "-") {
						fail("pot at %s after %s", b.GetAvailable(), r.GetId())
					}
				}
				mu.Lock()
				succeeded++
				maxPos = max(maxPos, r.GetPosition())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if succeeded != 100 {
		t.Errorf("%d transfers of 1.00 out of a pot of 100.00 succeeded, want 100", succeeded)
	}
	h.checkBalances(t, "drained", ledger, maxPos, map[string]string{
		"pot": "0.00 0.00 | 100.00/100.00 | 0.00/0.00",
		"bob": "100.00 100.00 | 0.00/100.00 | 0.00/0.00",
	})
}
