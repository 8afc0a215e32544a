package domain_test

import (
	"fmt"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestRaiseAlertHoldAccountIsTheRules: the writer does not take an
// AlertRaised's hold_account from the alerts read model on trust (a row the
// projector's database role may write): a rule without the hold action, or
// another hold account than the rule version's, is refused, so no forged
// row places a hold between two accounts of the asset.
func TestRaiseAlertHoldAccountIsTheRules(t *testing.T) {
	l := newEvalLog(t)
	l.step(account("alice", "USD", domain.SideCredit, "", ""))
	l.step(account("mallory", "USD", domain.SideCredit, "", ""))
	// A threshold rule on credits, no action at all.
	l.step(&domain.DefineRule{Rule: domain.Rule{ID: "big", Asset: "USD", Threshold: &domain.ThresholdRule{Side: domain.SideCredit}},
		ThresholdAmount: "10"})
	l.step(transfer("fund", posting("world", "alice", "USD", "500")))
	pos := l.s.Position()
	forged := domain.AlertRaised{ID: fmt.Sprintf("main:%d:big:alice", pos), Rule: "big", RuleVersion: 1, Position: pos, TransferID: "fund",
		Account: "alice", Asset: "USD", HoldAccount: "mallory", Figures: map[string]string{"hold": "500.00"}, RecordedAt: now}
	if _, err := decide(l.s, &domain.RaiseAlert{Alert: forged}); err == nil {
		l.step(&domain.RaiseAlert{Alert: forged})
		if _, err := decide(l.s, forged.AlertHold()); err == nil {
			t.Fatalf("an alert of rule big (no hold action) asking a hold of alice's 500.00 towards mallory is raised, and the hold placed")
		}
		t.Fatalf("an alert of rule big (no hold action) naming hold_account mallory is raised")
	}

	// A rule that holds, towards world: an alert saying mallory.
	l.step(holdRule("in", func(r *domain.DefineRule) { r.Rule.AccountPattern = "carol" }))
	l.step(transfer("t2", posting("world", "carol", "USD", "50")))
	pos = l.s.Position()
	forged = domain.AlertRaised{ID: fmt.Sprintf("main:%d:in:carol", pos), Rule: "in", RuleVersion: 1, Position: pos, TransferID: "t2",
		Account: "carol", Asset: "USD", HoldAccount: "mallory", Figures: map[string]string{"hold": "50.00"}, RecordedAt: now}
	if _, err := decide(l.s, &domain.RaiseAlert{Alert: forged}); err == nil {
		t.Fatalf("an alert of rule in (holding towards world, version 1 in force) naming hold_account mallory is raised")
	}
}

// TestHoldRuleHoldsATwoPhaseDeposit: a hold rule holds what came in. A
// deposit made in two phases (a client's hold crediting the account, then
// its post) fires it at the post, when the money comes in, not at the hold
// (whose hold would take money the account does not have): a large deposit
// does not escape the hold action by arriving as a pending transfer.
func TestHoldRuleHoldsATwoPhaseDeposit(t *testing.T) {
	l := newEvalLog(t)
	l.step(account("dave", "USD", domain.SideCredit, "0", ""))
	l.step(holdRule("big", func(r *domain.DefineRule) { r.Rule.AccountPattern = "dave" }))
	step := func(c domain.Command) []domain.Alert {
		t.Helper()
		e, err := decide(l.s, c)
		if err != nil {
			t.Fatalf("%T %s: %v", c, c.CommandID(), err)
		}
		pos := l.s.Position() + 1
		l.s.Evolve(pos, e)
		return l.ev.Apply(pos, now, e)
	}
	// placeable: the hold of one of alerts would be placed (a raise saying
	// it refused is refused: domain.CheckRaised's test).
	placeable := func(alerts []domain.Alert) bool {
		t.Helper()
		placed := false
		for i := range alerts {
			raised := domain.AlertRaisedOf(&alerts[i])
			raised.HoldRefused = "refused?"
			if _, err := decide(l.s, &domain.RaiseAlert{Alert: raised}); domain.FieldOf(err) == "alert.hold_refused" {
				placed = true
			} else {
				t.Logf("alert %s: its hold would be refused (raise saying so: %v)", raised.ID, err)
			}
		}
		return placed
	}
	held := placeable(step(hold("dep", 0, posting("world", "dave", "USD", "500"))))
	held = placeable(step(postHold("dep-post", "dep"))) || held
	if !held {
		t.Fatalf("a deposit of 500.00 to dave above the hold rule's 10 (a hold, then its post) is never held")
	}
}
