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

// TestImportCutBetweenAlertAndHold (review): an export may end anywhere
// (log export --to P); one ending at an AlertRaised whose rule holds, before
// its hold, is imported as it is (the checker only looks at what follows an
// event, and nothing does). The copy's writer then appends whatever comes
// next where the hold should stand: the copy's log, written by ledgerd
// itself, is one audit verify calls divergent (invariant: the hold does not
// follow its AlertRaised), and the hold is never placed (the raise mark is
// past the alert). The import should refuse such a log, or the copy stay
// verifiable.
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

// TestAlerterFreezesAHoldRuleWhileARaiseIsRefused (review): the mend that
// made a refused raise no longer stop the freezes (8c4525b) is undone for
// a rule that holds and freezes: the freeze pass waits at its alert for
// the raise pass (heldFirst), which a raise refused earlier in alert order
// stops for good. The hold the freeze waits for can then never be placed
// either (it is placed by the raise pass, stuck before it), and the
// account a rule means to freeze stays unfrozen, every round, for as long
// as the refused raise stays.
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
