package daemon_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

// stmtKey identifies a statement line.
func stmtKey(l *ledgerv1.StatementLine) string {
	return fmt.Sprintf("%d/%d/%s/%t", l.GetPosition(), l.GetPostingIndex(), l.GetDirection(), l.GetPending())
}

// stmtPages follows req's pages from its cursor on, checking that every page
// reflects the first one's position, opening and closing; between pages it
// calls between. It returns the first page (lines: all of them).
func (h *harness) stmtPages(t *testing.T, req *ledgerv1.ListStatementRequest, between func()) *ledgerv1.ListStatementResponse {
	t.Helper()
	var all *ledgerv1.ListStatementResponse
	for page := 0; ; page++ {
		if page > 10_000 {
			t.Fatalf("statement %v: over 10,000 pages", req)
		}
		resp, err := h.query.ListStatement(ctx(t), req)
		testenv.NoError(t, err)
		lines := resp.GetLines()
		if all == nil {
			all = resp
			all.Lines = nil
		} else if resp.GetPosition() != all.GetPosition() || resp.GetOpeningBalance() != all.GetOpeningBalance() ||
			resp.GetClosingBalance() != all.GetClosingBalance() {
			t.Fatalf("page %d at %d (opening %s, closing %s), first page at %d (%s, %s)", page, resp.GetPosition(),
				resp.GetOpeningBalance(), resp.GetClosingBalance(), all.GetPosition(), all.GetOpeningBalance(), all.GetClosingBalance())
		}
		all.Lines = append(all.Lines, lines...)
		if resp.GetNextCursor() == "" {
			all.NextCursor = ""
			return all
		}
		req.Cursor = resp.GetNextCursor()
		if between != nil {
			between()
		}
	}
}

// Paging through a statement while transfers go on: the pages, together,
// are exactly the lines up to the position the first page reflects (P),
// once each; their balances are those at P; the movements after P show in a
// new statement, not in the one being paged.
func TestStatementPagesWhileWritesContinue(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	for i := range 20 {
		h.transferOK(t, ledger, transfer(fmt.Sprintf("a%d", i), "alice", "bob", "1.25", "USD"))
	}

	var (
		written atomic.Int64
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := h.cmd.CreateTransfers(context.Background(), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
				Transfers: []*ledgerv1.Transfer{transfer(fmt.Sprintf("w%d", i), "bob", "alice", "0.50", "USD"),
					pendingTransfer(fmt.Sprintf("wh%d", i), "alice", "carol", "0.10", "USD", 0)}})
			if err != nil {
				t.Errorf("transfer while paging: %v", err)
				return
			}
			for _, r := range resp.GetResults() {
				if r.GetCode() != codeCreated {
					t.Errorf("transfer while paging: %s %s", r.GetCode(), r.GetDetail())
					return
				}
			}
			written.Add(1)
		}
	})
	stopWriting := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriting)

	// Read-your-writes: the first page waits for the transfers above (and the
	// account's opening) to be projected.
	req := &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "alice", Limit: 3, IncludePending: true,
		MinPosition: h.head(t, ledger)}
	paged := h.stmtPages(t, req, func() {
		// New movements arrive between every two pages.
		n := written.Load()
		testenv.Eventually(t, 10*time.Second, func() error {
			if written.Load() <= n {
				return fmt.Errorf("no transfer since %d", n)
			}
			return nil
		})
	})
	stopWriting()
	pin := paged.GetPosition()

	seen := map[string]bool{}
	for _, l := range paged.GetLines() {
		if seen[stmtKey(l)] {
			t.Fatalf("line %s on two pages", stmtKey(l))
		}
		seen[stmtKey(l)] = true
		if l.GetPosition() > pin {
			t.Fatalf("line at %d in a statement at %d", l.GetPosition(), pin)
		}
	}
	// The same statement in one page, once writes have stopped, bounded at
	// the pin: identical.
	whole, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "alice",
		ToPosition: pin, Limit: 1000, IncludePending: true})
	testenv.NoError(t, err)
	if diff := cmp.Diff(whole.GetLines(), paged.GetLines(), protocmp.Transform()); diff != "" {
		t.Fatalf("pages differ from the statement up to %d (-whole +pages):\n%s", pin, diff)
	}
	if paged.GetClosingBalance() != whole.GetClosingBalance() || paged.GetOpeningBalance() != "0.00" {
		t.Errorf("paged: opening %s closing %s, whole to %d closes %s", paged.GetOpeningBalance(),
			paged.GetClosingBalance(), pin, whole.GetClosingBalance())
	}
	at, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}, AsOfPosition: pin})
	testenv.NoError(t, err)
	if got := at.GetBalances()[0]; got.GetBalance() != paged.GetClosingBalance() || at.GetPosition() != pin {
		t.Errorf("alice as of %d: %s at %d, statement closes at %s", pin, got.GetBalance(), at.GetPosition(), paged.GetClosingBalance())
	}
	// A new statement shows what was written meanwhile.
	now := h.stmtPages(t, &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "alice", Limit: 1000, IncludePending: true,
		MinPosition: h.head(t, ledger)}, nil)
	if now.GetPosition() <= pin || len(now.GetLines()) <= len(paged.GetLines()) {
		t.Fatalf("new statement at %d with %d lines, paged one at %d with %d: nothing written meanwhile",
			now.GetPosition(), len(now.GetLines()), pin, len(paged.GetLines()))
	}
	if diff := cmp.Diff(now.GetLines()[:len(paged.GetLines())], paged.GetLines(), protocmp.Transform()); diff != "" {
		t.Errorf("the new statement does not start with the paged one (-new +paged):\n%s", diff)
	}
	// Running balances: each posted line moves the balance by its amount,
	// credit up (alice is credit-normal).
	balance := int64(0)
	for _, l := range now.GetLines() {
		if !l.GetPending() {
			if l.GetDirection() == ledgerv1.Direction_DIRECTION_CREDIT {
				balance += cents(t, l.GetAmount())
			} else {
				balance -= cents(t, l.GetAmount())
			}
		}
		if got := cents(t, l.GetRunningBalance()); got != balance {
			t.Fatalf("line %s: running balance %s, want %d cents", stmtKey(l), l.GetRunningBalance(), balance)
		}
	}
}

func TestStatementMinPosition(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "2.00", "USD"))
	resp, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if resp.GetPosition() < pos || len(resp.GetLines()) != 1 || resp.GetLines()[0].GetPosition() != pos ||
		resp.GetLines()[0].GetTransferId() != "t1" || resp.GetClosingBalance() != "2.00" || resp.GetAsset() != "USD" {
		t.Errorf("bob's statement at min_position %d: %v", pos, resp)
	}

	// A min_position past the log's head is refused at once, naming the
	// field: no projection reaches it before a write does. The deadline is a
	// guard past the server's 10 s wait, which would end in DeadlineExceeded.
	long, cancel := context.WithTimeout(context.Background(), queries.WaitMax+20*time.Second)
	defer cancel()
	head := pos // the last write
	for _, p := range []uint64{head + 1, 1 << 40} {
		_, err = h.query.ListStatement(long, &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: p})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "min_position" {
			t.Errorf("ListStatement at min_position %d, head %d: %v, want InvalidArgument on min_position", p, head, err)
		}
		_, err = h.query.GetBalances(long, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: p})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "min_position" {
			t.Errorf("GetBalances at min_position %d, head %d: %v, want InvalidArgument on min_position", p, head, err)
		}
		_, err = h.query.GetTrialBalance(long, &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: p})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "min_position" {
			t.Errorf("GetTrialBalance at min_position %d, head %d: %v, want InvalidArgument on min_position", p, head, err)
		}
	}
	// At the head itself: answered.
	if _, err := h.query.GetBalances(long, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: head}); err != nil {
		t.Errorf("GetBalances at min_position %d, the head: %v", head, err)
	}
	_, err = h.query.GetBalances(long, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, AsOfPosition: 1 << 40})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "as_of_position" {
		t.Errorf("GetBalances as of a position past the head: %v, want InvalidArgument on as_of_position", err)
	}
}

func TestStrongBalancesEqualProjection(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	h.transferOK(t, ledger, pendingTransfer("h1", "bob", "carol", "4.00", "USD", 0))
	mustCreated(t, h.post(t, ledger, &ledgerv1.PostPending{Id: "p1", PendingId: "h1", Amounts: []string{"1.50"}})...)
	h.transferOK(t, ledger, pendingTransfer("h2", "bob", "alice", "3.00", "USD", 0))

	accounts := []string{"alice", "bob", "carol", "eve:eur", "nobody"}
	strong, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts,
		Consistency: ledgerv1.Consistency_CONSISTENCY_STRONG})
	testenv.NoError(t, err)
	if head := h.head(t, ledger); strong.GetPosition() != head || len(strong.GetBalances()) != 4 {
		t.Fatalf("STRONG: %d balances at %d, want 4 at the head %d", len(strong.GetBalances()), strong.GetPosition(), head)
	}
	if b := strong.GetBalances()[1]; summary(b) != "8.50 5.50 | 1.50/10.00 | 3.00/0.00" {
		t.Errorf("bob, STRONG: %s", summary(b))
	}
	for name, req := range map[string]*ledgerv1.GetBalancesRequest{
		"projection":         {Ledger: ledger, Accounts: accounts, MinPosition: strong.GetPosition()},
		"as of the position": {Ledger: ledger, Accounts: accounts, AsOfPosition: strong.GetPosition()},
	} {
		got, err := h.query.GetBalances(ctx(t), req)
		testenv.NoError(t, err)
		if got.GetPosition() != strong.GetPosition() {
			t.Errorf("%s at %d, STRONG at %d", name, got.GetPosition(), strong.GetPosition())
		}
		// A STRONG balance has no position: the writer does not track it.
		for _, b := range got.GetBalances() {
			b.Position = 0
		}
		if diff := cmp.Diff(strong.GetBalances(), got.GetBalances(), protocmp.Transform()); diff != "" {
			t.Errorf("%s differs from STRONG (-strong +%s):\n%s", name, name, diff)
		}
	}
}

func TestBalancesAsOfThroughGRPC(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	early := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Microsecond)
	backdated := transfer("t1", "alice", "bob", "10.00", "USD")
	backdated.EffectiveAt = timestamppb.New(early)
	p1 := h.transferOK(t, ledger, backdated)
	p2 := h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	st, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: p2})
	testenv.NoError(t, err)
	if len(st.GetLines()) != 2 {
		t.Fatalf("bob's statement: %v", st)
	}
	balanceOf := func(req *ledgerv1.GetBalancesRequest) (string, uint64) {
		t.Helper()
		req.Ledger, req.Accounts = ledger, []string{"bob"}
		resp, err := h.query.GetBalances(ctx(t), req)
		testenv.NoError(t, err)
		if len(resp.GetBalances()) != 1 {
			t.Fatalf("%v: %v", req, resp)
		}
		return resp.GetBalances()[0].GetBalance(), resp.GetPosition()
	}
	for name, c := range map[string]struct {
		req     *ledgerv1.GetBalancesRequest
		balance string
		pos     uint64
	}{
		"as of t1's position":      {&ledgerv1.GetBalancesRequest{AsOfPosition: p1}, "10.00", p1},
		"as of t1's recorded time": {&ledgerv1.GetBalancesRequest{AsOfTime: st.GetLines()[0].GetRecordedAt()}, "10.00", p1},
		"as of t2's recorded time": {&ledgerv1.GetBalancesRequest{AsOfTime: st.GetLines()[1].GetRecordedAt()}, "11.00", p2},
		"an hour after t1's effective time": {&ledgerv1.GetBalancesRequest{AsOfTime: timestamppb.New(early.Add(time.Hour)),
			TimeBasis: ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE}, "10.00", p2},
		"before t1's effective time": {&ledgerv1.GetBalancesRequest{AsOfTime: timestamppb.New(early.Add(-time.Microsecond)),
			TimeBasis: ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE}, "0.00", p2},
	} {
		if balance, pos := balanceOf(c.req); balance != c.balance || pos != c.pos {
			t.Errorf("%s: %s at %d, want %s at %d", name, balance, pos, c.balance, c.pos)
		}
	}
}

func TestStatementQueriesRefuseBadRequests(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD"))
	h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	bobs, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", Limit: 1, MinPosition: pos + 1})
	testenv.NoError(t, err)
	if bobs.GetNextCursor() == "" {
		t.Fatal("bob's first page of one line has no next page")
	}
	at := timestamppb.Now()
	stmt := func(edit func(*ledgerv1.ListStatementRequest)) func() error {
		return func() error {
			req := &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "alice"}
			edit(req)
			_, err := h.query.ListStatement(ctx(t), req)
			return err
		}
	}
	balances := func(edit func(*ledgerv1.GetBalancesRequest)) func() error {
		return func() error {
			req := &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}}
			edit(req)
			_, err := h.query.GetBalances(ctx(t), req)
			return err
		}
	}
	strong := ledgerv1.Consistency_CONSISTENCY_STRONG
	for _, c := range []struct {
		name, field string
		call        func() error
	}{
		{"malformed ledger", "ledger", stmt(func(r *ledgerv1.ListStatementRequest) { r.Ledger = "Bad Ledger" })},
		{"unknown ledger", "ledger", stmt(func(r *ledgerv1.ListStatementRequest) { r.Ledger = "no-such-ledger" })},
		{"malformed account", "account", stmt(func(r *ledgerv1.ListStatementRequest) { r.Account = "bad account!" })},
		{"no account", "account", stmt(func(r *ledgerv1.ListStatementRequest) { r.Account = "" })},
		{"limit over 1000", "limit", stmt(func(r *ledgerv1.ListStatementRequest) { r.Limit = 1001 })},
		{"garbage cursor", "cursor", stmt(func(r *ledgerv1.ListStatementRequest) { r.Cursor = "garbage" })},
		{"another account's cursor", "cursor", stmt(func(r *ledgerv1.ListStatementRequest) { r.Cursor = bobs.GetNextCursor() })},
		{"another range's cursor", "cursor", stmt(func(r *ledgerv1.ListStatementRequest) {
			r.Account, r.FromPosition, r.Cursor = "bob", 1, bobs.GetNextCursor()
		})},
		{"positions reversed", "from_position", stmt(func(r *ledgerv1.ListStatementRequest) { r.FromPosition, r.ToPosition = 5, 4 })},
		{"times reversed", "from_time", stmt(func(r *ledgerv1.ListStatementRequest) {
			r.FromTime, r.ToTime = at, timestamppb.New(at.AsTime().Add(-time.Second))
		})},
		{"malformed from_time", "from_time", stmt(func(r *ledgerv1.ListStatementRequest) { r.FromTime = &timestamppb.Timestamp{Nanos: -1} })},
		{"malformed to_time", "to_time", stmt(func(r *ledgerv1.ListStatementRequest) { r.ToTime = &timestamppb.Timestamp{Seconds: 1 << 40} })},
		{"unknown time basis", "time_basis", stmt(func(r *ledgerv1.ListStatementRequest) { r.TimeBasis = 7 })},

		{"balances of an unknown ledger", "ledger", balances(func(r *ledgerv1.GetBalancesRequest) { r.Ledger = "no-such-ledger" })},
		{"balances of an unknown ledger, waiting", "ledger", balances(func(r *ledgerv1.GetBalancesRequest) {
			r.Ledger, r.MinPosition = "no-such-ledger", 1
		})},
		{"STRONG balances of an unknown ledger", "ledger", balances(func(r *ledgerv1.GetBalancesRequest) {
			r.Ledger, r.Consistency = "no-such-ledger", strong
		})},
		{"balances as of, unknown ledger", "ledger", balances(func(r *ledgerv1.GetBalancesRequest) {
			r.Ledger, r.AsOfPosition = "no-such-ledger", 1
		})},
		{"as_of_position with as_of_time", "as_of_time", balances(func(r *ledgerv1.GetBalancesRequest) { r.AsOfPosition, r.AsOfTime = 1, at })},
		{"STRONG as of a position", "consistency", balances(func(r *ledgerv1.GetBalancesRequest) { r.Consistency, r.AsOfPosition = strong, 1 })},
		{"STRONG as of a time", "consistency", balances(func(r *ledgerv1.GetBalancesRequest) { r.Consistency, r.AsOfTime = strong, at })},
		{"unknown consistency", "consistency", balances(func(r *ledgerv1.GetBalancesRequest) { r.Consistency = 9 })},
		{"malformed as_of_time", "as_of_time", balances(func(r *ledgerv1.GetBalancesRequest) { r.AsOfTime = &timestamppb.Timestamp{Nanos: 2e9} })},
		{"as of an unknown time basis", "time_basis", balances(func(r *ledgerv1.GetBalancesRequest) { r.AsOfTime, r.TimeBasis = at, 3 })},
	} {
		err := c.call()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != c.field {
			t.Errorf("%s: %v (field %q), want InvalidArgument naming %q", c.name, err, fieldOf(st), c.field)
		}
	}

	_, err = h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "nobody"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("statement of an unknown account: %v, want NotFound", err)
	}
	// Refused reads start nothing: the unknown ledger has no log.
	if head := h.head(t, "no-such-ledger"); head != 0 {
		t.Errorf("unknown ledger has head %d after refused reads", head)
	}
}
