package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestImportCutBetweenAlertAndHold: an export may end anywhere (log
// export --to P). One ending at an AlertRaised whose rule holds, before its
// hold, is refused by the import: the copy's writer would append whatever
// comes next where the hold stands, a log its own verify calls divergent,
// and the hold would never be placed.
func TestImportCutBetweenAlertAndHold(t *testing.T) {
	t.Parallel()
	h := start(t)
	mon := h.monitoring(t)
	base := testenv.Name(t)
	suffix := base[len(base)-16:]
	source, target := "a"+suffix, "z"+suffix
	h.setup(t, source)
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: source, Accounts: []*ledgerv1.Account{
		{Id: "review", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	h.transferOK(t, source, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big-in", Asset: "USD", AccountPattern: "carol", HoldAccount: "review",
		Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD},
		Kind:    &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00", Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, source, big), want{code: codeCreated})
	alert := fmt.Sprintf("%s:%d:big-in:carol", source, h.transferOK(t, source, transfer("t1", "bob", "carol", "80.00", "USD")))
	testenv.Eventually(t, 30*time.Second, func() error {
		if holds := h.eventsOf(t, source, "TransferPending", "alert", alert); len(holds) != 1 {
			return fmt.Errorf("%d holds of alert %s", len(holds), alert)
		}
		return nil
	})
	log := importExport(t, h.importStore(t), source)
	cut := -1
	for i := range log {
		if log[i].Type == domain.TypeAlertRaised && log[i].CommandID == alert {
			cut = i + 1
		}
	}
	if cut < 0 || cut == len(log) || log[cut].Type != "TransferPending" {
		t.Fatalf("no AlertRaised of %s followed by its hold in the source's log", alert)
	}
	if _, err := importStream(t, h.importClient(t), target, log[:cut], 8192); err != nil {
		return // refused: fine
	}
	h.transferOK(t, target, transfer("t2", "alice", "bob", "1.00", "USD"))
	if code, out, errOut := h.runCtl(t, target, "audit", "verify"); code != 0 || !strings.Contains(out, "clean") {
		t.Errorf("a log cut between an AlertRaised and its hold was imported, and the copy's own writer made it divergent:"+
			" audit verify: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAlerterFreezesAHoldRuleWhileARaiseIsRefused: the freeze pass waits
// at the alert of a rule that holds and freezes for the raise pass
// (heldFirst), but not once a raise refused earlier in alert order has
// stopped it: the hold can then never be placed, and the freeze goes ahead.
func TestAlerterFreezesAHoldRuleWhileARaiseIsRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "review", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx(t), `INSERT INTO alerts (ledger, position, id, rule_id, rule_version, transfer_id, account, counterparties,
		asset, figures, freezes, recorded_at) VALUES ($1, 1, $2, 'ghost', 1, '', 'bob', '{}', 'USD', '{}', false, now())`,
		ledger, ledger+":1:ghost:bob")
	testenv.NoError(t, err)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "carol", HoldAccount: "review",
		Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD, ledgerv1.RuleAction_RULE_ACTION_FREEZE},
		Kind:    &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00", Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big), want{code: codeCreated})
	alert := fmt.Sprintf("%s:%d:big:carol", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "80.00", "USD")))
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := h.countEvents(t, ledger, "AccountFrozen", alert); n != 1 {
			return fmt.Errorf("%d freezes for alert %s of a rule that holds and freezes, behind a raise refused", n, alert)
		}
		return nil
	})
}
