package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// End-to-end tests of monitoring: freezes, rules before and after commit,
// alerts, on a real ledgerd.

const (
	codeFrozen   = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_FROZEN
	codeRejected = ledgerv1.ResultCode_RESULT_CODE_RULE_REJECTED
)

func (h *harness) monitoring(t *testing.T) ledgerv1.MonitoringServiceClient {
	t.Helper()
	return ledgerv1.NewMonitoringServiceClient(h.conn(t))
}

func (h *harness) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (h *harness) defineRules(t *testing.T, mon ledgerv1.MonitoringServiceClient, ledger string, rules ...*ledgerv1.Rule) []*ledgerv1.ItemResult {
	t.Helper()
	resp, err := mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: rules})
	testenv.NoError(t, err)
	return resp.GetResults()
}

// TestFreezeAccounts: a frozen account's debits are refused with
// ACCOUNT_FROZEN naming the posting's debit account, its credits pass; a
// second freeze is EXISTS; after the unfreeze, debits pass again.
func TestFreezeAccounts(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "100.00", "USD"))

	fr, err := mon.FreezeAccounts(ctx(t), &ledgerv1.FreezeAccountsRequest{Ledger: ledger, AccountIds: []string{"bob", "nobody"}, Reason: "kyc"})
	testenv.NoError(t, err)
	checkResults(t, "freeze", fr.GetResults(), want{code: codeCreated}, want{ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND, "account_ids"})
	again, err := mon.FreezeAccounts(ctx(t), &ledgerv1.FreezeAccountsRequest{Ledger: ledger, AccountIds: []string{"bob"}})
	testenv.NoError(t, err)
	checkResults(t, "freeze again", again.GetResults(), want{code: codeExists})
	if again.GetResults()[0].GetPosition() != fr.GetResults()[0].GetPosition() {
		t.Errorf("EXISTS at %d, want the freeze's %d", again.GetResults()[0].GetPosition(), fr.GetResults()[0].GetPosition())
	}

	out := &ledgerv1.Transfer{Id: "out", Postings: []*ledgerv1.Posting{posting("alice", "carol", "1.00", "USD"), posting("bob", "alice", "1.00", "USD")}}
	checkResults(t, "debit of a frozen account", h.transfers(t, ledger, out), want{codeFrozen, "postings[1].debit_account"})
	h.transferOK(t, ledger, transfer("in", "alice", "bob", "1.00", "USD"))

	un, err := mon.UnfreezeAccounts(ctx(t), &ledgerv1.UnfreezeAccountsRequest{Ledger: ledger, AccountIds: []string{"bob"}, Reason: "kyc done"})
	testenv.NoError(t, err)
	checkResults(t, "unfreeze", un.GetResults(), want{code: codeCreated})
	h.transferOK(t, ledger, out)
	if n := h.countEvents(t, ledger, "AccountFrozen", "bob"); n != 1 {
		t.Errorf("%d AccountFrozen events, want 1", n)
	}
	// ledgerctl account freeze and unfreeze.
	if out := h.runCtlOK(t, ledger, "account", "freeze", "--reason", "again", "carol"); !strings.Contains(out, "CREATED") {
		t.Errorf("ledgerctl account freeze: %q", out)
	}
	checkResults(t, "debit of carol, frozen by ledgerctl", h.transfers(t, ledger, transfer("c1", "carol", "alice", "0.01", "USD")),
		want{codeFrozen, "postings[0].debit_account"})
	if out := h.runCtlOK(t, ledger, "accounts", "unfreeze", "carol"); !strings.Contains(out, "CREATED") {
		t.Errorf("ledgerctl account unfreeze: %q", out)
	}
	h.transferOK(t, ledger, transfer("c1", "carol", "alice", "0.01", "USD"))
	_, err = mon.FreezeAccounts(ctx(t), &ledgerv1.FreezeAccountsRequest{Ledger: ledger})
	if got := badField(err); status.Code(err) != codes.InvalidArgument || got != "account_ids" {
		t.Errorf("FreezeAccounts of no account: %v (field %q), want InvalidArgument naming account_ids", err, got)
	}
}

// TestVelocityRuleBeforeCommit is the acceptance test: a velocity rule in
// before-commit mode (more than 10 debits an hour) refuses the 11th
// transfer in the window with RULE_REJECTED naming the rule; an account it
// does not watch is not limited; a credit is not counted.
func TestVelocityRuleBeforeCommit(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "1000.00", "USD"))
	rule := &ledgerv1.Rule{Id: "ten-an-hour", Mode: ledgerv1.RuleMode_RULE_MODE_BEFORE_COMMIT, Asset: "USD", AccountPattern: "bob",
		Kind: &ledgerv1.Rule_Velocity{Velocity: &ledgerv1.VelocityRule{Side: ledgerv1.Side_SIDE_DEBIT, WindowSeconds: 3600, MaxCount: 10}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, rule), want{code: codeCreated})
	checkResults(t, "define again", h.defineRules(t, mon, ledger, rule), want{code: codeExists})

	start := time.Now().Add(-50 * time.Minute)
	for i := range 10 {
		tr := transfer(fmt.Sprintf("t%d", i), "bob", "carol", "1.00", "USD")
		tr.EffectiveAt = timestamppb.New(start.Add(time.Duration(i) * time.Minute))
		h.transferOK(t, ledger, tr)
	}
	h.transferOK(t, ledger, transfer("credit", "alice", "bob", "1.00", "USD"))
	h.transferOK(t, ledger, transfer("other", "alice", "carol", "1.00", "USD"))
	rs := h.transfers(t, ledger, transfer("t10", "bob", "carol", "1.00", "USD"))
	checkResults(t, "11th debit in the hour", rs, want{codeRejected, "postings"})
	if d := rs[0].GetDetail(); !strings.Contains(d, "ten-an-hour version 1") || !strings.Contains(d, "11 postings") {
		t.Errorf("detail %q does not name the rule, its version and the count", d)
	}

	list, err := mon.ListRules(ctx(t), &ledgerv1.ListRulesRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if len(list.GetRules()) != 1 || list.GetRules()[0].GetVersion() != 1 || list.GetRules()[0].GetRule().GetVelocity().GetMaxCount() != 10 {
		t.Fatalf("ListRules = %v, want the one rule at version 1", list.GetRules())
	}
	// Disabled, the rule refuses nothing: a new version.
	rule.Disabled = true
	checkResults(t, "disable", h.defineRules(t, mon, ledger, rule), want{code: codeCreated})
	h.transferOK(t, ledger, transfer("t10", "bob", "carol", "1.00", "USD"))

	bad := &ledgerv1.Rule{Id: "bad", Asset: "USD", Kind: &ledgerv1.Rule_Velocity{Velocity: &ledgerv1.VelocityRule{WindowSeconds: 0, MaxCount: 1}}}
	checkResults(t, "bad window", h.defineRules(t, mon, ledger, bad), want{ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD, "velocity.window_seconds"})
}

// alertLines lists the ledger's alerts (after position min), paging by 2.
func alertLines(t *testing.T, mon ledgerv1.MonitoringServiceClient, req *ledgerv1.ListAlertsRequest) []string {
	t.Helper()
	var out []string
	req.Limit = 2
	for {
		resp, err := mon.ListAlerts(ctx(t), req)
		testenv.NoError(t, err)
		for _, a := range resp.GetAlerts() {
			out = append(out, fmt.Sprintf("%s %s v%d %s available=%s %v", a.GetId(), a.GetTransferId(), a.GetRuleVersion(),
				a.GetAccount(), a.GetFigures()["available"], a.GetActions()))
		}
		if resp.GetNextCursor() == "" {
			return out
		}
		req.Cursor = resp.GetNextCursor()
	}
}

// TestBalanceCrossingFiresOnce is the acceptance test: an after-commit
// balance-crossing rule fires exactly once over a sequence that crosses the
// level and stays below, and once more after re-arming; a rebuild of the
// alerts projection (a replay of the log) reproduces every alert, ids
// included.
func TestBalanceCrossingFiresOnce(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "150.00", "USD"))
	low := &ledgerv1.Rule{Id: "low", Asset: "USD", AccountPattern: "bob",
		Kind: &ledgerv1.Rule_BalanceCrossing{BalanceCrossing: &ledgerv1.BalanceCrossingRule{Level: "100.00", Crossing: ledgerv1.Crossing_CROSSING_BELOW}}}
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00",
		Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, low, big), created(2)...)

	var pos []uint64
	for i, step := range []struct{ from, to, amount string }{
		{"bob", "carol", "60.00"},  // 90: crosses, fires
		{"bob", "carol", "10.00"},  // 80: stays below
		{"bob", "carol", "5.00"},   // 75: stays below
		{"alice", "bob", "100.00"}, // 175: re-arms (and big: a credit above 70)
		{"bob", "carol", "80.00"},  // 95: crosses again, fires
		{"bob", "carol", "1.00"},   // 94: stays below
	} {
		pos = append(pos, h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i), step.from, step.to, step.amount, "USD")))
	}
	head := pos[len(pos)-1]
	want := []string{
		fmt.Sprintf("%s:%d:low:bob t0 v1 bob available=90.00 []", ledger, pos[0]),
		fmt.Sprintf("%s:%d:big:bob t3 v1 bob available= []", ledger, pos[3]),
		fmt.Sprintf("%s:%d:big:carol t4 v1 carol available= []", ledger, pos[4]), // carol credited 80
		fmt.Sprintf("%s:%d:low:bob t4 v1 bob available=95.00 []", ledger, pos[4]),
	}
	got := alertLines(t, mon, &ledgerv1.ListAlertsRequest{Ledger: ledger, MinPosition: head})
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("alerts (-got +want):\n%s", diff)
	}
	byRule := alertLines(t, mon, &ledgerv1.ListAlertsRequest{Ledger: ledger, RuleId: "low", Account: "bob", MinPosition: head})
	if diff := cmp.Diff(byRule, []string{want[0], want[3]}); diff != "" {
		t.Errorf("alerts of rule low (-got +want):\n%s", diff)
	}

	admin := ledgerv1.NewAdminServiceClient(h.conn(t))
	rebuild(t, admin, ledger, "alerts")
	if again := alertLines(t, mon, &ledgerv1.ListAlertsRequest{Ledger: ledger, MinPosition: head}); !slices.Equal(again, got) {
		t.Fatalf("after a rebuild, alerts %v, want %v", again, got)
	}
}

// TestFreezeAction: a threshold rule with the freeze action fires on a
// transfer, which stands; the freezer then freezes the account (its next
// debit ACCOUNT_FROZEN). Unfrozen by hand, it stays unfrozen across a
// restart of ledgerd (the same alert never freezes twice), and a new alert
// after the restart freezes it again, once.
func TestFreezeAction(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "bob", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_FREEZE},
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "100.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big), want{code: codeCreated})

	first := fmt.Sprintf("%s:%d:big:bob", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	waitFrozen := func(h *harness, alert string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if n := h.countEvents(t, ledger, "AccountFrozen", alert); n != 1 {
				return fmt.Errorf("%d freezes for alert %s", n, alert)
			}
			return nil
		})
	}
	waitFrozen(h, first)
	checkResults(t, "debit of bob, frozen by the rule", h.transfers(t, ledger, transfer("t2", "bob", "carol", "1.00", "USD")),
		want{codeFrozen, "postings[0].debit_account"})
	alerts := alertLines(t, mon, &ledgerv1.ListAlertsRequest{Ledger: ledger, RuleId: "big"})
	if want := []string{first + " t1 v1 bob available= [RULE_ACTION_FREEZE]"}; !slices.Equal(alerts, want) {
		t.Fatalf("alerts %v, want %v", alerts, want)
	}

	_, err := mon.UnfreezeAccounts(ctx(t), &ledgerv1.UnfreezeAccountsRequest{Ledger: ledger, AccountIds: []string{"bob"}, Reason: "checked"})
	testenv.NoError(t, err)
	h.transferOK(t, ledger, transfer("t2", "bob", "carol", "1.00", "USD"))

	h.m.Close()
	h2 := restart(t, h)
	mon2 := h2.monitoring(t)
	// The writer's state keeps the alert acted on: bob stays unfrozen.
	h2.transferOK(t, ledger, transfer("t3", "bob", "carol", "1.00", "USD"))
	second := fmt.Sprintf("%s:%d:big:bob", ledger, h2.transferOK(t, ledger, transfer("t4", "bob", "carol", "101.00", "USD")))
	// The freezer acts on alerts in order: once the second's freeze landed,
	// the first was considered again, and refused (EXISTS).
	waitFrozen(h2, second)
	if n := h2.countEvents(t, ledger, "AccountFrozen", first); n != 1 {
		t.Errorf("%d freezes for the first alert after a restart, want 1", n)
	}
	checkResults(t, "debit of bob, frozen again", h2.transfers(t, ledger, transfer("t5", "bob", "carol", "1.00", "USD")),
		want{codeFrozen, "postings[0].debit_account"})
	if got := alertLines(t, mon2, &ledgerv1.ListAlertsRequest{Ledger: ledger, Account: "bob"}); len(got) != 2 {
		t.Errorf("alerts of bob %v, want 2", got)
	}
}

// TestDryRunRule: a rule dry-run over the log answers the alerts it would
// have raised (version 0), over positions or recorded times, and changes
// nothing: no rule, no alert. Bad rules and ranges name the field.
func TestDryRunRule(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	var pos []uint64
	for i, amount := range []string{"50.00", "150.00", "100.00", "200.00"} {
		pos = append(pos, h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i), "bob", "carol", amount, "USD")))
	}
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "bob",
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "100.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	dry := func(req *ledgerv1.DryRunRuleRequest) (string, []string) {
		t.Helper()
		req.Ledger, req.Rule = ledger, big
		resp, err := mon.DryRunRule(ctx(t), req)
		testenv.NoError(t, err)
		var got []string
		for _, a := range resp.GetAlerts() {
			got = append(got, fmt.Sprintf("%s %s v%d %s", a.GetId(), a.GetTransferId(), a.GetRuleVersion(), a.GetFigures()["amount"]))
		}
		return fmt.Sprintf("%d events %d..%d truncated=%t", resp.GetEvents(), resp.GetFromPosition(), resp.GetToPosition(), resp.GetTruncated()), got
	}
	head := pos[3]
	summary, got := dry(&ledgerv1.DryRunRuleRequest{})
	want := []string{fmt.Sprintf("%s:%d:big:bob t1 v0 150.00", ledger, pos[1]), fmt.Sprintf("%s:%d:big:bob t3 v0 200.00", ledger, pos[3])}
	if diff := cmp.Diff(got, want); diff != "" || summary != fmt.Sprintf("%d events 1..%d truncated=false", head, head) {
		t.Fatalf("dry run over the log: %s, alerts (-got +want):\n%s", summary, diff)
	}
	if summary, got = dry(&ledgerv1.DryRunRuleRequest{FromPosition: pos[2], ToPosition: pos[3]}); !slices.Equal(got, want[1:]) ||
		summary != fmt.Sprintf("2 events %d..%d truncated=false", pos[2], pos[3]) {
		t.Errorf("dry run from %d to %d: %s %v, want %v", pos[2], pos[3], summary, got, want[1:])
	}
	if summary, got = dry(&ledgerv1.DryRunRuleRequest{FromTime: timestamppb.New(time.Now().Add(time.Hour))}); len(got) != 0 ||
		summary != "0 events 0..0 truncated=false" {
		t.Errorf("dry run from a future time: %s %v, want nothing", summary, got)
	}
	if _, got = dry(&ledgerv1.DryRunRuleRequest{ToTime: timestamppb.New(time.Now().Add(time.Hour))}); !slices.Equal(got, want) {
		t.Errorf("dry run to a future time: %v, want %v", got, want)
	}
	// Nothing changed: no rule, no alert.
	if n := h.countEvents(t, ledger, "RuleDefined", "big"); n != 0 {
		t.Errorf("%d RuleDefined events after dry runs", n)
	}
	if got := alertLines(t, mon, &ledgerv1.ListAlertsRequest{Ledger: ledger, MinPosition: head}); len(got) != 0 {
		t.Errorf("alerts after dry runs: %v", got)
	}

	for _, c := range []struct {
		name  string
		req   *ledgerv1.DryRunRuleRequest
		field string
	}{
		{"past the head", &ledgerv1.DryRunRuleRequest{Ledger: ledger, Rule: big, ToPosition: head + 1}, "to_position"},
		{"from after to", &ledgerv1.DryRunRuleRequest{Ledger: ledger, Rule: big, FromPosition: 3, ToPosition: 2}, "from_position"},
		{"from past the head", &ledgerv1.DryRunRuleRequest{Ledger: ledger, Rule: big, FromPosition: head + 1}, "from_position"},
		{"no rule", &ledgerv1.DryRunRuleRequest{Ledger: ledger}, "rule"},
		{"finer than the asset", &ledgerv1.DryRunRuleRequest{Ledger: ledger, Rule: &ledgerv1.Rule{Id: "x", Asset: "USD",
			Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1.001"}}}}, "threshold.amount"},
		{"unknown asset", &ledgerv1.DryRunRuleRequest{Ledger: ledger, Rule: &ledgerv1.Rule{Id: "x", Asset: "GBP",
			Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1"}}}}, "asset"},
	} {
		_, err := mon.DryRunRule(ctx(t), c.req)
		if got := badField(err); status.Code(err) != codes.InvalidArgument || got != c.field {
			t.Errorf("%s: %v (field %q), want InvalidArgument naming %s", c.name, err, got, c.field)
		}
	}
}

// TestRulesCtl: ledgerctl rules define -f (YAML), rules list, a transfer
// that fires the rule, alerts list --rule --account (table and JSON), rules
// dry-run -f; a misspelt field in the file is a usage error.
func TestRulesCtl(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		testenv.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	rules := write("rules.yaml", `
- id: big-debit
  asset: USD
  account_pattern: bob
  threshold: {amount: "100.00", side: SIDE_DEBIT}
  actions: [RULE_ACTION_FREEZE]
- id: low
  asset: USD
  balance_crossing: {level: "10.00", crossing: CROSSING_BELOW}
- id: big-in
  asset: USD
  account_pattern: carol
  threshold: {amount: "100.00", side: SIDE_CREDIT}
  actions: [RULE_ACTION_HOLD]
  hold_account: alice
`)
	if out := h.runCtlOK(t, ledger, "rules", "define", "-f", rules); strings.Count(out, "CREATED") != 3 {
		t.Fatalf("rules define: %q, want 3 CREATED", out)
	}
	if out := h.runCtlOK(t, ledger, "rules", "define", "-f", rules); strings.Count(out, "EXISTS") != 3 {
		t.Errorf("rules define again: %q, want 3 EXISTS", out)
	}
	out := h.runCtlOK(t, ledger, "rules", "list")
	if !strings.Contains(out, "big-debit") || !strings.Contains(out, "threshold > 100.00") || !strings.Contains(out, "freeze") ||
		!strings.Contains(out, "crossing below 10.00") || !strings.Contains(out, "hold(alice)") {
		t.Errorf("rules list:\n%s", out)
	}
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	pos := h.transferOK(t, ledger, transfer("big", "bob", "carol", "150.00", "USD"))

	out = h.runCtlOK(t, ledger, "alerts", "list", "--rule", "big-debit", "--account", "bob", "--min-position", fmt.Sprint(pos))
	if !strings.Contains(out, "big-debit") || !strings.Contains(out, "amount=150.00") || !strings.Contains(out, "freeze") {
		t.Errorf("alerts list:\n%s", out)
	}
	// Once raised, the list says where: the AlertRaised's position, after
	// the alert's own.
	testenv.Eventually(t, 30*time.Second, func() error {
		out := h.runCtlOK(t, ledger, "alerts", "list", "--rule", "big-debit")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == fmt.Sprint(pos) {
				if at, err := strconv.ParseUint(f[len(f)-1], 10, 64); err != nil || at <= pos {
					return fmt.Errorf("alert at %d not raised yet (RAISED %q)", pos, f[len(f)-1])
				}
				return nil
			}
		}
		return fmt.Errorf("alerts list: no alert at %d:\n%s", pos, out)
	})
	if out = h.runCtlOK(t, ledger, "alerts", "list", "--rule", "big-in", "--min-position", fmt.Sprint(pos)); !strings.Contains(out, "hold(alice)") {
		t.Errorf("alerts list --rule big-in:\n%s", out)
	}
	out = h.runCtlOK(t, ledger, "alerts", "list", "--rule", "big-debit", "--min-position", fmt.Sprint(pos), "-o", "json")
	if !strings.Contains(out, fmt.Sprintf(`"id":"%s:%d:big-debit:bob"`, ledger, pos)) {
		t.Errorf("alerts list -o json:\n%s", out)
	}

	dry := write("rule.json", `[{"id": "dry", "asset": "USD", "threshold": {"amount": "100.00"}}]`)
	// Up to pos: the freeze the alert above asks for is appended after it
	// (the alerter polls the alerts), so the head may be further.
	out = h.runCtlOK(t, ledger, "rules", "dry-run", "-f", dry, "--from", fmt.Sprint(pos), "--to", fmt.Sprint(pos))
	// The transfer debits bob and credits carol, both above 100.
	if !strings.Contains(out, "2 alerts, 1 events evaluated") {
		t.Errorf("rules dry-run:\n%s", out)
	}
	one := write("one.yaml", "id: one\nasset: USD\nthreshold: {amount: \"1000.00\"}\n")
	if out = h.runCtlOK(t, ledger, "rules", "dry-run", "-f", one); !strings.Contains(out, "0 alerts") {
		t.Errorf("rules dry-run of one rule above every posting:\n%s", out)
	}
	code, _, errOut := h.runCtl(t, ledger, "rules", "define", "-f", write("bad.yaml", "- id: x\n  asset: USD\n  treshold: {amount: \"1\"}\n"))
	if code != 2 || !strings.Contains(errOut, "treshold") {
		t.Errorf("rules define with a misspelt field: exit %d, %q; want 2 naming it", code, errOut)
	}
}
