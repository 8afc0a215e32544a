package daemon_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of accounting periods: ClosePeriod, the refusal of
// anything dated in a closed period, ListPeriods, ledgerctl period.

const codePeriodClosed = ledgerv1.ResultCode_RESULT_CODE_PERIOD_CLOSED

// datedTransfer is a transfer effective at.
func datedTransfer(id, from, to, amount string, at time.Time) *ledgerv1.Transfer {
	tr := transfer(id, from, to, amount, "USD")
	tr.EffectiveAt = timestamppb.New(at)
	return tr
}

func (h *harness) closePeriod(t *testing.T, ledger string, end time.Time) (*ledgerv1.ItemResult, error) {
	t.Helper()
	resp, err := h.cmd.ClosePeriod(ctx(t), &ledgerv1.ClosePeriodRequest{Ledger: ledger, End: timestamppb.New(end)})
	return resp.GetResult(), err
}

// TestPeriodCloseRefusesTheClosedPeriod: a transfer, a hold and a reversal
// dated in a closed period are refused with PERIOD_CLOSED naming
// effective_at, and the log and the balances do not move; corrections dated
// in the open period are accepted. Closes go in order: the same end again is
// EXISTS, an earlier one FailedPrecondition, one in the future
// InvalidArgument naming end; a writer key may not close.
func TestPeriodCloseRefusesTheClosedPeriod(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	now := time.Now().UTC().Truncate(time.Second)
	end := now.Add(-time.Hour)
	h.transferOK(t, ledger, datedTransfer("t1", "alice", "bob", "10.00", end.Add(-time.Hour)))

	res, err := h.closePeriod(t, ledger, end)
	testenv.NoError(t, err)
	mustCreated(t, res)
	closedAt := res.GetPosition()
	again, err := h.closePeriod(t, ledger, end)
	testenv.NoError(t, err)
	if again.GetCode() != codeExists || again.GetPosition() != closedAt {
		t.Errorf("the same close again: %s at %d, want EXISTS at %d", again.GetCode(), again.GetPosition(), closedAt)
	}
	_, err = h.closePeriod(t, ledger, end.Add(-time.Minute))
	wantStatus(t, "a close before the last", err, codes.FailedPrecondition, "end of the last closed period")
	_, err = h.closePeriod(t, ledger, now.Add(time.Hour))
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "end" {
		t.Errorf("a close in the future: %v, want InvalidArgument naming end", err)
	}
	writer, _ := h.as(t, h.key).newKey(t, []string{ledger}, "writer")
	_, err = h.as(t, writer).cmd.ClosePeriod(ctx(t), &ledgerv1.ClosePeriodRequest{Ledger: ledger, End: timestamppb.New(now)})
	wantCode(t, "ClosePeriod with a writer key", err, codes.PermissionDenied)

	head := h.head(t, ledger)
	before := h.balances(t, ledger, head, "alice", "bob")
	late := end.Add(-time.Second)
	hold := datedTransfer("h-late", "alice", "bob", "1.00", late)
	hold.Pending = true
	checkResults(t, "dated in the closed period", h.transfers(t, ledger,
		datedTransfer("t-late", "alice", "bob", "5.00", late), hold),
		want{codePeriodClosed, "effective_at"}, want{codePeriodClosed, "effective_at"})
	checkResults(t, "a reversal dated in the closed period", h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "r-late", TransferId: "t1", EffectiveAt: timestamppb.New(late)}),
		want{codePeriodClosed, "effective_at"})
	if after := h.head(t, ledger); after != head {
		t.Fatalf("head moved from %d to %d on refused commands", head, after)
	}
	if diff := cmp.Diff(summaries(h.balances(t, ledger, head, "alice", "bob")), summaries(before)); diff != "" {
		t.Errorf("balances moved on refused commands (-got +want):\n%s", diff)
	}

	// Corrections go into the open period: the same amounts, dated from end.
	checkResults(t, "dated in the open period", h.transfers(t, ledger,
		datedTransfer("t-late", "alice", "bob", "5.00", end)), want{code: codeCreated})
	checkResults(t, "a reversal in the open period", h.reverse(t, ledger,
		&ledgerv1.Reversal{Id: "r1", TransferId: "t1"}), want{code: codeCreated})
}

func summaries(bs map[string]*ledgerv1.Balance) map[string]string {
	out := make(map[string]string, len(bs))
	for id, b := range bs {
		out[id] = summary(b)
	}
	return out
}

// TestListPeriods: each close is listed with the positions it spans, its
// trial balance equals GetTrialBalance as of its position, and its closing
// digest is what an auditor recomputes from the balances as of that
// position with the documented encoding. ledgerctl lists and closes too.
func TestListPeriods(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	now := time.Now().UTC().Truncate(time.Second)
	first, second := now.Add(-2*time.Hour), now.Add(-time.Hour)
	h.transferOK(t, ledger, datedTransfer("t1", "alice", "bob", "10.00", first.Add(-time.Minute)))
	r1, err := h.closePeriod(t, ledger, first)
	testenv.NoError(t, err)
	h.transferOK(t, ledger, datedTransfer("t2", "bob", "carol", "2.50", first))
	out := h.runCtlOK(t, ledger, "period", "close", "--end", second.Format(time.RFC3339))
	if !strings.Contains(out, "CREATED") {
		t.Fatalf("ledgerctl period close: %q, want CREATED", out)
	}
	head := h.head(t, ledger)

	resp, err := h.query.ListPeriods(ctx(t), &ledgerv1.ListPeriodsRequest{Ledger: ledger, MinPosition: head})
	testenv.NoError(t, err)
	ps := resp.GetPeriods()
	if len(ps) != 2 || resp.GetMore() {
		t.Fatalf("ListPeriods: %d periods (more %v), want 2", len(ps), resp.GetMore())
	}
	if p := ps[0]; p.GetPosition() != r1.GetPosition() || p.GetFromPosition() != 1 || p.GetStart() != nil ||
		!p.GetEnd().AsTime().Equal(first) {
		t.Errorf("first period: %d..%d [%v, %s), want 1..%d [beginning, %s)", p.GetFromPosition(), p.GetPosition(),
			p.GetStart(), p.GetEnd().AsTime(), r1.GetPosition(), first)
	}
	if p := ps[1]; p.GetPosition() != head || p.GetFromPosition() != r1.GetPosition()+1 ||
		!p.GetStart().AsTime().Equal(first) || !p.GetEnd().AsTime().Equal(second) {
		t.Errorf("second period: %d..%d [%s, %s), want %d..%d [%s, %s)", p.GetFromPosition(), p.GetPosition(),
			p.GetStart().AsTime(), p.GetEnd().AsTime(), r1.GetPosition()+1, head, first, second)
	}
	accounts := []string{"alice", "bob", "carol", "eve:eur"}
	for _, p := range ps {
		tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, AsOfPosition: p.GetPosition()})
		testenv.NoError(t, err)
		var want, got []string
		for _, l := range tb.GetLines() {
			want = append(want, l.GetAsset()+" "+l.GetDebitsPosted()+"/"+l.GetCreditsPosted())
		}
		for _, l := range p.GetTrialBalance() {
			got = append(got, l.GetAsset()+" "+l.GetDebitsPosted()+"/"+l.GetCreditsPosted())
		}
		if !slices.Equal(got, want) {
			t.Errorf("period to %d: trial balance %v, GetTrialBalance as of it %v", p.GetPosition(), got, want)
		}
		bs, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts,
			AsOfPosition: p.GetPosition()})
		testenv.NoError(t, err)
		var lines []string
		for _, b := range bs.GetBalances() {
			lines = append(lines, b.GetAccount()+"\t"+b.GetAsset()+"\t"+b.GetDebitsPosted()+"\t"+b.GetCreditsPosted()+"\n")
		}
		slices.Sort(lines)
		sum := sha256.Sum256([]byte(strings.Join(lines, "")))
		if d := hex.EncodeToString(sum[:]); p.GetClosingDigest() != d || p.GetAccounts() != uint64(len(accounts)) {
			t.Errorf("period to %d: digest %s over %d accounts, recomputed %s over %d", p.GetPosition(),
				p.GetClosingDigest(), p.GetAccounts(), d, len(accounts))
		}
	}
	// Pages: limit 1 says more, after_position takes the next; the limit
	// holds at its bound.
	page, err := h.query.ListPeriods(ctx(t), &ledgerv1.ListPeriodsRequest{Ledger: ledger, Limit: 1})
	testenv.NoError(t, err)
	if len(page.GetPeriods()) != 1 || !page.GetMore() || page.GetPeriods()[0].GetPosition() != ps[0].GetPosition() {
		t.Errorf("ListPeriods limit 1: %d periods, more %v; want the first and more", len(page.GetPeriods()), page.GetMore())
	}
	page, err = h.query.ListPeriods(ctx(t), &ledgerv1.ListPeriodsRequest{Ledger: ledger, Limit: 1000,
		AfterPosition: ps[0].GetPosition()})
	testenv.NoError(t, err)
	if len(page.GetPeriods()) != 1 || page.GetMore() || page.GetPeriods()[0].GetPosition() != head {
		t.Errorf("ListPeriods after the first: %d periods, more %v; want the second alone", len(page.GetPeriods()), page.GetMore())
	}
	_, err = h.query.ListPeriods(ctx(t), &ledgerv1.ListPeriodsRequest{Ledger: ledger, Limit: 1001})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "limit" {
		t.Errorf("ListPeriods limit 1001: %v, want InvalidArgument naming limit", err)
	}
	if out := h.runCtlOK(t, ledger, "period", "list"); !strings.Contains(out, ps[1].GetClosingDigest()) ||
		!strings.Contains(out, "beginning") {
		t.Errorf("ledgerctl period list:\n%s\nwant both periods, the first from the beginning", out)
	}
	// The auditor's replay and verify accept the log with its closes.
	h.runCtlOK(t, ledger, "audit", "verify")
}
