package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestHoldBeforeFreezeUnderABacklog: a rule that both holds and freezes
// holds first. A round raises at most alertPagesMax pages of alerts while
// the freeze pass reads only freezing alerts: behind a backlog of other
// alerts (a burst, or the alerts of an upgrade), the freeze pass would
// reach the alert first and freeze the account, and the hold, placed
// rounds later, would be refused (account frozen). The freeze pass waits
// for the raise pass at an alert of a rule that holds.
func TestHoldBeforeFreezeUnderABacklog(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "review", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	every := &ledgerv1.Rule{Id: "every", Asset: "USD", AccountPattern: "alice",
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "0.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "carol", HoldAccount: "review",
		Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD, ledgerv1.RuleAction_RULE_ACTION_FREEZE},
		Kind:    &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00", Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, every, big), want{code: codeCreated}, want{code: codeCreated})

	var burst []*ledgerv1.Transfer
	for i := range 8000 {
		burst = append(burst, transfer(fmt.Sprint("b", i), "alice", "bob", "0.01", "USD"))
	}
	mustCreated(t, h.transfers(t, ledger, burst...)...)
	alert := fmt.Sprintf("%s:%d:big:carol", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "80.00", "USD")))
	var raised []string
	testenv.Eventually(t, 120*time.Second, func() error {
		if raised = h.eventsOf(t, ledger, domain.TypeAlertRaised, "id", alert); len(raised) != 1 {
			return fmt.Errorf("alert %s raised %d times", alert, len(raised))
		}
		return nil
	})
	if strings.Contains(raised[0], `"hold_refused"`) {
		t.Fatalf("the hold of a rule that holds and freezes was refused: the freeze came first: %s", raised[0])
	}
	if holds := h.eventsOf(t, ledger, "TransferPending", "alert", alert); len(holds) != 1 {
		t.Fatalf("%d holds of alert %s", len(holds), alert)
	}
}
