package audit_test

import (
	"fmt"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestVerifyChecksAHoldRefused: an AlertRaised whose hold_refused says
// the writer refused its hold is checked against the state the writer
// decided it on (domain.CheckRaised decides the hold again): here the
// account was open, unfrozen and funded, so the hold was placed. The log's
// AlertRaised edited to say "refused" and its hold dropped, the chain
// sealed again, is a divergence.
func TestVerifyChecksAHoldRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	d, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, d.GetResult())
	credit := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "world", Asset: "USD", NormalBalance: credit}, {Id: "carol", Asset: "USD", NormalBalance: credit},
		{Id: "review", Asset: "USD", NormalBalance: credit}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	r, err := h.mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: []*ledgerv1.Rule{{Id: "big", Asset: "USD",
		AccountPattern: "carol", HoldAccount: "review", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD},
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00", Side: ledgerv1.Side_SIDE_CREDIT}}}}})
	testenv.NoError(t, err)
	mustCreated(t, r.GetResults()...)
	tr, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: []*ledgerv1.Transfer{{Id: "t1",
		Postings: []*ledgerv1.Posting{{DebitAccount: "world", CreditAccount: "carol", Amount: "80.00", Asset: "USD"}}}}})
	testenv.NoError(t, err)
	mustCreated(t, tr.GetResults()...)
	var recs []eventstore.Record
	testenv.Eventually(t, 30*time.Second, func() error {
		recs = h.exportRecords(t, ledger)
		if last := recs[len(recs)-1]; last.Type != domain.TypeTransferPending {
			return fmt.Errorf("last event %s, want the rule's hold", last.Type)
		}
		return nil
	})
	mustClean(t, "the export", verifyRecords(t, recs))

	at := len(recs) - 2
	if recs[at].Type != domain.TypeAlertRaised {
		t.Fatalf("event before the hold: %s", recs[at].Type)
	}
	forged := append([]eventstore.Record(nil), recs[:at+1]...)
	e, err := domain.UnmarshalEvent(forged[at].Type, forged[at].SchemaVersion, forged[at].Payload)
	testenv.NoError(t, err)
	a := e.(domain.AlertRaised)
	a.HoldRefused = "made up"
	forged[at].Payload, err = domain.MarshalEvent(a)
	testenv.NoError(t, err)
	forged[at].Seal(forged[at-1].Hash)
	rep := verifyRecords(t, forged)
	if rep.Divergence == nil {
		t.Fatalf("verify is clean on an AlertRaised whose hold (80.00 of carol's, who had it) is said refused and was never placed")
	}
}
