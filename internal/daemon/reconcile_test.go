package daemon_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of reconciliation on a real ledgerd: a generated bank
// statement against generated ledger transfers, with a known answer.

func (h *harness) reconClient(t testing.TB) ledgerv1.ReconciliationServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewReconciliationServiceClient(conn)
}

// reconCase is a generated bank account: transfers on the ledger, lines on
// the bank's statement, and what reconciling them must give.
type reconCase struct {
	transfers []*ledgerv1.Transfer
	lines     []*ledgerv1.ExternalLine
	// matches by rule: each a sorted list of "L:<external id>" and
	// "M:<transfer id>" members.
	matches       map[string][][]string
	extraLines    []string // external ids with no movement
	missingInBank []string // transfer ids with no line
	used          map[int64]bool
	rng           *rand.Rand
	base          time.Time
}

// amount returns a cents amount used nowhere else, so that no two items
// match by chance.
func (c *reconCase) amount() int64 {
	for {
		a := 1000 + c.rng.Int64N(1_000_000)
		if !c.used[a] {
			c.used[a] = true
			return a
		}
	}
}

func reconCents(a int64) string { return fmt.Sprintf("%d.%02d", a/100, a%100) }

func (c *reconCase) day(d int) time.Time { return c.base.AddDate(0, 0, d) }

// movement adds a transfer into the bank (in) or out of it.
func (c *reconCase) movement(id string, amount int64, in bool, ref string, day int) {
	p := &ledgerv1.Posting{DebitAccount: "bank", CreditAccount: "customers", Amount: reconCents(amount), Asset: "USD"}
	if !in {
		p.DebitAccount, p.CreditAccount = "payouts", "bank"
	}
	c.transfers = append(c.transfers, &ledgerv1.Transfer{Id: id, Postings: []*ledgerv1.Posting{p}, Reference: ref,
		EffectiveAt: timestamppb.New(c.day(day).Add(10 * time.Hour))})
}

func (c *reconCase) line(id string, amount int64, in bool, ref string, day int) {
	dir := ledgerv1.LineDirection_LINE_DIRECTION_CREDIT
	if !in {
		dir = ledgerv1.LineDirection_LINE_DIRECTION_DEBIT
	}
	c.lines = append(c.lines, &ledgerv1.ExternalLine{ExternalId: id, Amount: reconCents(amount), Direction: dir,
		ValueDate: c.day(day).Format(domain.DateLayout), Reference: ref, Description: "generated " + id})
}

func (c *reconCase) expect(rule string, members ...string) {
	slices.Sort(members)
	c.matches[rule] = append(c.matches[rule], members)
}

func newReconCase(seed uint64, n int) *reconCase {
	c := &reconCase{matches: map[string][][]string{}, used: map[int64]bool{}, rng: rand.New(rand.NewPCG(seed, 1)),
		base: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -40)}
	for i := range n {
		day := c.rng.IntN(30)
		in := c.rng.IntN(3) > 0
		switch kind := c.rng.IntN(6); kind {
		case 0, 1: // exact: same reference and amount
			a, ref := c.amount(), fmt.Sprintf("INV-%d", i)
			c.movement(fmt.Sprintf("t-%d", i), a, in, ref, day)
			c.line(fmt.Sprintf("b-%d", i), a, in, ref, day)
			c.expect("REFERENCE", fmt.Sprintf("M:t-%d", i), fmt.Sprintf("L:b-%d", i))
		case 2: // date-shifted, and the bank has its own reference
			a := c.amount()
			c.movement(fmt.Sprintf("t-%d", i), a, in, "", day)
			c.line(fmt.Sprintf("b-%d", i), a, in, fmt.Sprintf("BANK-%d", i), day+1+c.rng.IntN(2))
			c.expect("AMOUNT_DATE", fmt.Sprintf("M:t-%d", i), fmt.Sprintf("L:b-%d", i))
		case 3: // one bank line for two or three ledger movements, or the reverse
			parts := 2 + c.rng.IntN(2)
			var total int64
			amounts := make([]int64, parts)
			for j := range amounts {
				amounts[j] = c.amount()
				total += amounts[j]
			}
			if c.used[total] {
				continue
			}
			c.used[total] = true
			ref := fmt.Sprintf("SPLIT-%d", i)
			members := []string{}
			if c.rng.IntN(2) == 0 {
				for j, a := range amounts {
					c.movement(fmt.Sprintf("t-%d-%d", i, j), a, in, ref, day)
					members = append(members, fmt.Sprintf("M:t-%d-%d", i, j))
				}
				c.line(fmt.Sprintf("b-%d", i), total, in, ref, day)
				members = append(members, fmt.Sprintf("L:b-%d", i))
			} else {
				c.movement(fmt.Sprintf("t-%d", i), total, in, ref, day)
				members = append(members, fmt.Sprintf("M:t-%d", i))
				for j, a := range amounts {
					c.line(fmt.Sprintf("b-%d-%d", i, j), a, in, ref, day)
					members = append(members, fmt.Sprintf("L:b-%d-%d", i, j))
				}
			}
			c.expect("SPLIT", members...)
		case 4: // in the ledger, not at the bank (yet)
			c.movement(fmt.Sprintf("t-%d", i), c.amount(), in, fmt.Sprintf("MISS-%d", i), day)
			c.missingInBank = append(c.missingInBank, fmt.Sprintf("t-%d", i))
		case 5: // at the bank only: a fee
			c.line(fmt.Sprintf("b-%d", i), c.amount(), false, fmt.Sprintf("FEE-%d", i), day)
			c.extraLines = append(c.extraLines, fmt.Sprintf("b-%d", i))
		}
	}
	slices.Sort(c.extraLines)
	slices.Sort(c.missingInBank)
	for _, ms := range c.matches {
		slices.SortFunc(ms, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	}
	return c
}

func (h *harness) reconSetup(t testing.TB, ledger string) {
	t.Helper()
	d, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, d.GetResult())
	debit, credit := ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT, ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "bank", Asset: "USD", NormalBalance: debit},
		{Id: "customers", Asset: "USD", NormalBalance: credit},
		{Id: "payouts", Asset: "USD", NormalBalance: debit},
	}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
}

// reconView is everything ListUnmatched shows of an account, for comparing.
type reconView struct {
	Lines, Movements []*ledgerv1.ReconItem
	Matches          []*ledgerv1.ReconMatch
	Summary          *ledgerv1.GetReconciliationResponse
}

func (h *harness) reconView(t *testing.T, rc ledgerv1.ReconciliationServiceClient, ledger, account string, pos uint64) reconView {
	t.Helper()
	var v reconView
	for _, side := range []ledgerv1.UnmatchedSide{ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES,
		ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MOVEMENTS, ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MATCHES} {
		token := ""
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("more than 1000 pages")
			}
			resp, err := rc.ListUnmatched(ctx(t), &ledgerv1.ListUnmatchedRequest{Ledger: ledger, Account: account, Side: side,
				PageSize: 7, PageToken: token, MinPosition: pos})
			testenv.NoError(t, err)
			switch side {
			case ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES:
				v.Lines = append(v.Lines, resp.GetItems()...)
			case ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MOVEMENTS:
				v.Movements = append(v.Movements, resp.GetItems()...)
			default:
				v.Matches = append(v.Matches, resp.GetMatches()...)
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	s, err := rc.GetReconciliation(ctx(t), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: account, MinPosition: pos})
	testenv.NoError(t, err)
	s.Position = 0 // compared apart
	v.Summary = s
	return v
}

func memberOf(it *ledgerv1.ReconItem) string {
	if it.GetKind() == "line" {
		return "L:" + it.GetExternalId()
	}
	return "M:" + it.GetTransferId()
}

func matchesByRule(v reconView) map[string][][]string {
	out := map[string][][]string{}
	for _, m := range v.Matches {
		var members []string
		for _, it := range m.GetItems() {
			members = append(members, memberOf(it))
		}
		slices.Sort(members)
		out[m.GetRule()] = append(out[m.GetRule()], members)
	}
	for _, ms := range out {
		slices.SortFunc(ms, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	}
	return out
}

func ids(items []*ledgerv1.ReconItem) []string {
	out := []string{}
	for _, it := range items {
		if it.GetKind() == "line" {
			out = append(out, it.GetExternalId())
		} else {
			out = append(out, it.GetTransferId())
		}
	}
	slices.Sort(out)
	return out
}

// TestReconcileGeneratedStatement imports a generated statement against
// generated transfers (exact, date-shifted and split matches, lines missing
// on either side), and checks the matches and both unmatched sets exactly;
// then re-import, conflicts, manual match and unmatch, a rebuild, and the
// daily journal against the trial balance.
func TestReconcileGeneratedStatement(t *testing.T) {
	t.Parallel()
	h := start(t)
	rc := h.reconClient(t)
	ledger := testenv.Name(t)
	h.reconSetup(t, ledger)
	c := newReconCase(7, 300)
	half := len(c.transfers) / 2
	// Some movements before the account is reconciled (read back from the
	// movements projection), the rest after its first lines.
	for i := 0; i < half; i += 100 {
		mustCreated(t, h.transfers(t, ledger, c.transfers[i:min(i+100, half)]...)...)
	}
	rules, err := rc.SetMatchingRules(ctx(t), &ledgerv1.SetMatchingRulesRequest{Ledger: ledger, Account: "bank", Rules: []*ledgerv1.MatchingRule{
		{Kind: ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_REFERENCE},
		{Kind: ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_AMOUNT_DATE, DateWindowDays: 2},
		{Kind: ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_SPLIT, DateWindowDays: 2, GroupMax: 4},
	}})
	testenv.NoError(t, err)
	mustCreated(t, rules.GetResult())
	for i := half; i < len(c.transfers); i += 100 {
		mustCreated(t, h.transfers(t, ledger, c.transfers[i:min(i+100, len(c.transfers))]...)...)
	}
	var pos uint64
	for i := 0; i < len(c.lines); i += 50 {
		resp, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
			Lines: c.lines[i:min(i+50, len(c.lines))], Atomic: true})
		testenv.NoError(t, err)
		mustCreated(t, resp.GetResults()...)
		pos = max(pos, resp.GetResults()[len(resp.GetResults())-1].GetPosition())
	}

	v := h.reconView(t, rc, ledger, "bank", pos)
	if diff := cmp.Diff(c.matches, matchesByRule(v)); diff != "" {
		t.Errorf("matches by rule (-want +got):\n%s", diff)
	}
	for _, m := range v.Matches {
		if m.GetDifference() != "0.00" {
			t.Errorf("match %s (%s) has difference %s, want 0.00", m.GetId(), m.GetRule(), m.GetDifference())
		}
	}
	if diff := cmp.Diff(c.extraLines, ids(v.Lines)); diff != "" {
		t.Errorf("unmatched lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c.missingInBank, ids(v.Movements)); diff != "" {
		t.Errorf("unmatched movements (-want +got):\n%s", diff)
	}
	s := v.Summary
	t.Logf("%d transfers, %d lines: %d reference, %d amount-date, %d split matches, %d lines and %d movements unmatched",
		len(c.transfers), len(c.lines), len(c.matches["REFERENCE"]), len(c.matches["AMOUNT_DATE"]), len(c.matches["SPLIT"]),
		len(c.extraLines), len(c.missingInBank))
	if s.GetUnmatchedLines() != uint64(len(c.extraLines)) || s.GetUnmatchedMovements() != uint64(len(c.missingInBank)) {
		t.Errorf("summary counts %d lines, %d movements unmatched, want %d and %d", s.GetUnmatchedLines(), s.GetUnmatchedMovements(),
			len(c.extraLines), len(c.missingInBank))
	}
	if s.GetMatchedDifference() != "0.00" {
		t.Errorf("matched difference %s, want 0.00 with no tolerance", s.GetMatchedDifference())
	}
	bridge := cents(t, s.GetUnmatchedLinesToEndSum()) - cents(t, s.GetUnmatchedMovementsToEndSum()) + cents(t, s.GetMatchedDifference())
	if got := cents(t, s.GetDifference()); got != bridge || got != cents(t, s.GetExternalBalance())-cents(t, s.GetLedgerBalance()) {
		t.Errorf("difference %s, external %s - ledger %s, explained %d cents", s.GetDifference(), s.GetExternalBalance(), s.GetLedgerBalance(), bridge)
	}
	bal := h.balances(t, ledger, pos, "bank")["bank"]
	if s.GetLedgerBalance() != bal.GetBalance() {
		t.Errorf("ledger balance %s, the balances projection says %s", s.GetLedgerBalance(), bal.GetBalance())
	}

	t.Run("re-import is idempotent", func(t *testing.T) {
		for i := 0; i < len(c.lines); i += 100 {
			resp, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
				Lines: c.lines[i:min(i+100, len(c.lines))]})
			testenv.NoError(t, err)
			for _, r := range resp.GetResults() {
				if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS {
					t.Fatalf("re-import of %s: %s, want EXISTS", r.GetId(), r.GetCode())
				}
			}
		}
		changed := proto.Clone(c.lines[0]).(*ledgerv1.ExternalLine)
		changed.Amount = "0.01"
		resp, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
			Lines: []*ledgerv1.ExternalLine{changed}})
		testenv.NoError(t, err)
		if r := resp.GetResults()[0]; r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS || r.GetField() != "amount" {
			t.Fatalf("conflicting re-import: %s on %q, want EXISTS_WITH_DIFFERENT_FIELDS on amount", r.GetCode(), r.GetField())
		}
		again := h.reconView(t, rc, ledger, "bank", pos)
		if diff := cmp.Diff(v, again, protocmp.Transform()); diff != "" {
			t.Fatalf("the reconciliation changed after re-import (-before +after):\n%s", diff)
		}
	})

	// A manual match of a fee with a missing movement, and an unmatch of an
	// automatic match.
	fee, missing := c.extraLines[0], c.missingInBank[0]
	mm, err := rc.MatchManually(ctx(t), &ledgerv1.MatchManuallyRequest{Ledger: ledger, Account: "bank", Id: "manual-1",
		Lines: []*ledgerv1.LineRef{{Source: "acme", ExternalId: fee}}, Movements: []*ledgerv1.MovementRef{{TransferId: missing}},
		Reason: "fee booked as a payout"})
	testenv.NoError(t, err)
	mustCreated(t, mm.GetResult())
	auto := c.matches["REFERENCE"][0]
	un, err := rc.Unmatch(ctx(t), &ledgerv1.UnmatchRequest{Ledger: ledger, Account: "bank",
		Line: &ledgerv1.LineRef{Source: "acme", ExternalId: strings.TrimPrefix(auto[0], "L:")}, Reason: "wrong customer"})
	testenv.NoError(t, err)
	mustCreated(t, un.GetResult())
	pos = un.GetResult().GetPosition()
	v = h.reconView(t, rc, ledger, "bank", pos)
	got := matchesByRule(v)
	if want := [][]string{{"L:" + fee, "M:" + missing}}; !cmp.Equal(got["MANUAL"], want) {
		t.Errorf("manual matches %v, want %v", got["MANUAL"], want)
	}
	if len(got["REFERENCE"]) != len(c.matches["REFERENCE"])-1 {
		t.Errorf("%d reference matches after an unmatch, want %d", len(got["REFERENCE"]), len(c.matches["REFERENCE"])-1)
	}
	manualOnly := 0
	for _, it := range append(slices.Clone(v.Lines), v.Movements...) {
		if it.GetManualOnly() {
			manualOnly++
		}
	}
	if manualOnly != 2 {
		t.Errorf("%d manual-only items after unmatching a pair, want 2", manualOnly)
	}
	for _, tc := range []struct {
		name string
		req  *ledgerv1.MatchManuallyRequest
		code ledgerv1.ResultCode
	}{
		{"unknown line", &ledgerv1.MatchManuallyRequest{Ledger: ledger, Account: "bank", Id: "m-x", Reason: "r",
			Lines: []*ledgerv1.LineRef{{Source: "acme", ExternalId: "nope"}}, Movements: []*ledgerv1.MovementRef{{TransferId: missing}}},
			ledgerv1.ResultCode_RESULT_CODE_LINE_NOT_FOUND},
		{"line of another account", &ledgerv1.MatchManuallyRequest{Ledger: ledger, Account: "customers", Id: "m-y", Reason: "r",
			Lines: []*ledgerv1.LineRef{{Source: "acme", ExternalId: fee}}, Movements: []*ledgerv1.MovementRef{{TransferId: missing}}},
			ledgerv1.ResultCode_RESULT_CODE_LINE_NOT_FOUND},
		{"unknown transfer", &ledgerv1.MatchManuallyRequest{Ledger: ledger, Account: "bank", Id: "m-z", Reason: "r",
			Lines: []*ledgerv1.LineRef{{Source: "acme", ExternalId: fee}}, Movements: []*ledgerv1.MovementRef{{TransferId: "nope"}}},
			ledgerv1.ResultCode_RESULT_CODE_MOVEMENT_NOT_FOUND},
	} {
		resp, err := rc.MatchManually(ctx(t), tc.req)
		testenv.NoError(t, err)
		if resp.GetResult().GetCode() != tc.code {
			t.Errorf("%s: %s, want %s", tc.name, resp.GetResult().GetCode(), tc.code)
		}
	}

	t.Run("a rebuild gives the same reconciliation", func(t *testing.T) {
		conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		testenv.NoError(t, err)
		defer conn.Close()
		rebuild(t, ledgerv1.NewAdminServiceClient(conn), ledger, "reconciliation")
		after := h.reconView(t, rc, ledger, "bank", pos)
		if diff := cmp.Diff(v, after, protocmp.Transform()); diff != "" {
			t.Fatalf("the reconciliation differs after a rebuild (-before +after):\n%s", diff)
		}
	})

	t.Run("the daily journal ties to the trial balance", func(t *testing.T) {
		j, err := rc.GetDailyJournal(ctx(t), &ledgerv1.GetDailyJournalRequest{Ledger: ledger, MinPosition: pos})
		testenv.NoError(t, err)
		tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: pos})
		testenv.NoError(t, err)
		if len(j.GetTotals()) != 1 || j.GetTotals()[0].GetAsset() != "USD" {
			t.Fatalf("journal totals %v, want one USD line", j.GetTotals())
		}
		if got, want := j.GetTotals()[0].GetAmount(), tb.GetLines()[0].GetDebitsPosted(); got != want {
			t.Errorf("journal total %s, trial balance debits %s", got, want)
		}
		var postings uint64
		var sum int64
		for _, l := range j.GetLines() {
			postings += l.GetPostings()
			sum += cents(t, l.GetAmount())
		}
		if postings != uint64(len(c.transfers)) || sum != cents(t, j.GetTotals()[0].GetAmount()) {
			t.Errorf("journal lines: %d postings summing to %d cents, want %d postings and the total", postings, sum, len(c.transfers))
		}
	})
}

// TestReconcileRefusals checks bad requests: each names its field and
// changes nothing.
func TestReconcileRefusals(t *testing.T) {
	t.Parallel()
	h := start(t)
	rc := h.reconClient(t)
	ledger := testenv.Name(t)
	h.reconSetup(t, ledger)
	_, err := rc.GetReconciliation(ctx(t), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: "bank"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("reconciliation of an account with no lines: %v, want NotFound", err)
	}
	good := &ledgerv1.ExternalLine{ExternalId: "l1", Amount: "1.00", Direction: ledgerv1.LineDirection_LINE_DIRECTION_CREDIT, ValueDate: "2026-01-02"}
	bad := func(edit func(l *ledgerv1.ExternalLine)) *ledgerv1.ExternalLine {
		l := &ledgerv1.ExternalLine{ExternalId: good.ExternalId, Amount: good.Amount, Direction: good.Direction, ValueDate: good.ValueDate}
		edit(l)
		return l
	}
	for _, tc := range []struct {
		name, field string
		line        *ledgerv1.ExternalLine
	}{
		{"bad amount", "amount", bad(func(l *ledgerv1.ExternalLine) { l.Amount = "1.0.0" })},
		{"too many decimals", "amount", bad(func(l *ledgerv1.ExternalLine) { l.Amount = "1.001" })},
		{"bad date", "value_date", bad(func(l *ledgerv1.ExternalLine) { l.ValueDate = "02/01/2026" })},
		{"no direction", "direction", bad(func(l *ledgerv1.ExternalLine) { l.Direction = 0 })},
	} {
		resp, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
			Lines: []*ledgerv1.ExternalLine{good, tc.line}, Atomic: true})
		testenv.NoError(t, err)
		r := resp.GetResults()
		if r[1].GetField() != tc.field || r[0].GetCode() != ledgerv1.ResultCode_RESULT_CODE_LINKED_ITEM_FAILED {
			t.Errorf("%s: %s %q then %s, want the field %s and the good line not applied", tc.name, r[1].GetCode(), r[1].GetField(), r[0].GetCode(), tc.field)
		}
	}
	if n := h.countEvents(t, ledger, domain.TypeStatementImported, "l1"); n != 0 {
		t.Fatalf("%d lines imported by refused requests", n)
	}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"too many lines", "lines", func() error {
			_, err := rc.ImportStatement(ctx(t), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
				Lines: make([]*ledgerv1.ExternalLine, 8193)})
			return err
		}},
		{"bad period", "from_date", func() error {
			_, err := rc.GetReconciliation(ctx(t), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: "bank", FromDate: "2026-13-01"})
			return err
		}},
		{"reversed period", "from_date", func() error {
			_, err := rc.GetReconciliation(ctx(t), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: "bank",
				FromDate: "2026-02-01", ToDate: "2026-01-01"})
			return err
		}},
		{"page size", "page_size", func() error {
			_, err := rc.ListUnmatched(ctx(t), &ledgerv1.ListUnmatchedRequest{Ledger: ledger, Account: "bank",
				Side: ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES, PageSize: 1001})
			return err
		}},
		{"no side", "side", func() error {
			_, err := rc.ListUnmatched(ctx(t), &ledgerv1.ListUnmatchedRequest{Ledger: ledger, Account: "bank"})
			return err
		}},
		{"bad token", "page_token", func() error {
			_, err := rc.ListUnmatched(ctx(t), &ledgerv1.ListUnmatchedRequest{Ledger: ledger, Account: "bank",
				Side: ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES, PageToken: "nope"})
			return err
		}},
		{"bad asset", "asset", func() error {
			_, err := rc.GetDailyJournal(ctx(t), &ledgerv1.GetDailyJournalRequest{Ledger: ledger, Asset: "usd"})
			return err
		}},
	} {
		err := tc.call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
}

// BenchmarkReconcileImport measures, on a real ledgerd, the import of a
// statement of 100,000 lines over gRPC (chunks of 8,192, atomic) against
// 100,000 transfers into the bank account, and the time until the
// reconciliation projection has matched the whole statement: 80% by
// reference, 15% by amount and date, 5% fees left unmatched.
func BenchmarkReconcileImport(b *testing.B) {
	const n = 100_000
	h := start(b)
	rc := h.reconClient(b)
	for round := 0; b.Loop(); round++ {
		ledger := fmt.Sprintf("%s-%d", testenv.Name(b), round)
		h.reconSetup(b, ledger)
		day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -30)
		var ts []*ledgerv1.Transfer
		for i := range n {
			ref := fmt.Sprintf("INV-%d", i)
			if i%20 >= 16 {
				ref = ""
			}
			ts = append(ts, &ledgerv1.Transfer{Id: fmt.Sprintf("t-%d", i), Reference: ref,
				EffectiveAt: timestamppb.New(day.AddDate(0, 0, i%28).Add(time.Hour)),
				Postings:    []*ledgerv1.Posting{{DebitAccount: "bank", CreditAccount: "customers", Amount: reconCents(int64(100_000 + i)), Asset: "USD"}}})
			if len(ts) == 1000 {
				resp, err := h.cmd.CreateTransfers(ctx(b), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
				testenv.NoError(b, err)
				mustCreated(b, resp.GetResults()...)
				ts = ts[:0]
			}
		}
		lines := make([]*ledgerv1.ExternalLine, n)
		for i := range lines {
			l := &ledgerv1.ExternalLine{ExternalId: fmt.Sprintf("l-%d", i), Amount: reconCents(int64(100_000 + i)),
				Direction: ledgerv1.LineDirection_LINE_DIRECTION_CREDIT, ValueDate: day.AddDate(0, 0, i%28).Format(domain.DateLayout),
				Reference: fmt.Sprintf("INV-%d", i)}
			switch {
			case i%20 >= 19:
				l.Amount, l.Direction, l.Reference = reconCents(int64(1+i%5000)), ledgerv1.LineDirection_LINE_DIRECTION_DEBIT, fmt.Sprintf("FEE-%d", i)
			case i%20 >= 16:
				l.Reference, l.ValueDate = fmt.Sprintf("BANK-%d", i), day.AddDate(0, 0, i%28+1).Format(domain.DateLayout)
			}
			lines[i] = l
		}
		began := time.Now()
		var last uint64
		for i := 0; i < n; i += 8192 {
			resp, err := rc.ImportStatement(ctx(b), &ledgerv1.ImportStatementRequest{Ledger: ledger, Account: "bank", Source: "acme",
				Lines: lines[i:min(i+8192, n)], Atomic: true})
			testenv.NoError(b, err)
			mustCreated(b, resp.GetResults()...)
			last = resp.GetResults()[len(resp.GetResults())-1].GetPosition()
		}
		imported := time.Since(began)
		var s *ledgerv1.GetReconciliationResponse
		testenv.Eventually(b, 5*time.Minute, func() error {
			var err error
			s, err = rc.GetReconciliation(ctx(b), &ledgerv1.GetReconciliationRequest{Ledger: ledger, Account: "bank", MinPosition: last})
			return err
		})
		matched := time.Since(began)
		if s.GetMatchedLines() != n-n/20 || s.GetUnmatchedLines() != n/20 {
			b.Fatalf("%d lines matched and %d not, want %d and %d", s.GetMatchedLines(), s.GetUnmatchedLines(), n-n/20, n/20)
		}
		b.ReportMetric(float64(n)/imported.Seconds(), "imported-lines/s")
		b.ReportMetric(matched.Seconds(), "s-to-match-100k")
	}
}
