package domain_test

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func holdRule(id string, edit func(r *domain.DefineRule)) *domain.DefineRule {
	c := &domain.DefineRule{Rule: domain.Rule{ID: id, Asset: "USD", Actions: []domain.RuleAction{domain.ActionHold}, HoldAccount: "world",
		Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "10"}
	if edit != nil {
		edit(c)
	}
	return c
}

// TestHoldRuleRefusals: the hold action is for after-commit threshold
// rules holding towards an open account of their asset, named only with it.
func TestHoldRuleRefusals(t *testing.T) {
	s := newWorld(t)
	for _, tc := range []struct {
		name  string
		edit  func(r *domain.DefineRule)
		err   error
		field string
	}{
		{"velocity", func(r *domain.DefineRule) {
			r.Rule.Threshold, r.Rule.Velocity = nil, &domain.VelocityRule{WindowSeconds: 60, MaxCount: 1}
		}, domain.ErrInvalidField, "actions[0]"},
		{"before commit", func(r *domain.DefineRule) { r.Rule.Mode = domain.ModeBeforeCommit }, domain.ErrInvalidField, "actions[0]"},
		{"twice", func(r *domain.DefineRule) { r.Rule.Actions = append(r.Rule.Actions, domain.ActionHold) }, domain.ErrInvalidField, "actions[1]"},
		{"no hold account", func(r *domain.DefineRule) { r.Rule.HoldAccount = "" }, domain.ErrInvalidField, "hold_account"},
		{"a hold account without the action", func(r *domain.DefineRule) { r.Rule.Actions = nil }, domain.ErrInvalidField, "hold_account"},
		{"an unknown hold account", func(r *domain.DefineRule) { r.Rule.HoldAccount = "nobody" }, domain.ErrAccountNotFound, "hold_account"},
		{"a hold account of another asset", func(r *domain.DefineRule) { r.Rule.HoldAccount = "jpy:world" }, domain.ErrInvalidField, "hold_account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, s, holdRule("h", tc.edit), tc.err, tc.field)
		})
	}
	apply(t, s, holdRule("h", nil))
}

// TestAlertHoldIDsAreReserved: no client's transfer, hold, post, void or
// reversal takes an id of a rule's hold; a hold of an alert takes that
// alert's id only.
func TestAlertHoldIDsAreReserved(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "100")))
	apply(t, s, hold("h1", 0, posting("carol", "world", "USD", "1")))
	id := domain.AlertHoldID("main:5:big:carol")
	for _, c := range []domain.Command{
		transfer(id, posting("world", "carol", "USD", "1")),
		hold(id, 0, posting("carol", "world", "USD", "1")),
		postHold(id, "h1"),
		voidHold(id, "h1"),
		reverse(id, "fund"),
		&domain.CreateTransfer{ID: domain.AlertHoldID("main:6:big:carol"), Pending: true, Alert: "main:5:big:carol",
			Postings: []domain.PostingInput{posting("carol", "world", "USD", "1")}},
	} {
		if err := c.Validate(); domain.FieldOf(err) != "id" {
			t.Errorf("%T %s: %v, want a refusal of the id", c, c.CommandID(), err)
		}
	}
	apply(t, s, &domain.CreateTransfer{ID: id, Pending: true, Alert: "main:5:big:carol",
		Postings: []domain.PostingInput{posting("carol", "world", "USD", "1")}})
}

// TestAlertHoldIsNotCounted: a hold rule's alert, raised, places its hold,
// which no rule counts: neither the hold rule itself (it would fire on its
// own hold, each placing another), nor a before-commit rule that would
// refuse it.
func TestAlertHoldIsNotCounted(t *testing.T) {
	l := newEvalLog(t)
	l.step(holdRule("big", func(r *domain.DefineRule) { r.Rule.HoldAccount = "world" }))
	l.step(&domain.DefineRule{Rule: domain.Rule{ID: "cap", Mode: domain.ModeBeforeCommit, Asset: "USD",
		Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "60"})
	e, err := decide(l.s, transfer("t1", posting("world", "carol", "USD", "50")))
	if err != nil {
		t.Fatal(err)
	}
	pos := l.s.Position() + 1
	l.s.Evolve(pos, e)
	alerts := l.ev.Apply(pos, now, e)
	if len(alerts) != 2 || alerts[0].HoldAccount != "world" { // on world (debit) and carol (credit)
		t.Fatalf("alerts %+v, want 2 holding towards world", alerts)
	}
	raised := domain.AlertRaisedOf(&alerts[1])
	l.step(&domain.RaiseAlert{Alert: raised})
	h := raised.AlertHold()
	if h == nil || h.Postings[0] != posting("carol", "world", "USD", "50.00") {
		t.Fatalf("hold %+v, want 50.00 from carol to world", h)
	}
	if got := l.step(h); len(got) != 0 {
		t.Fatalf("the rule's own hold raised %v", got)
	}
	// A client's hold of the same is counted, and refused before commit
	// above 60.
	if got := l.step(hold("h2", 0, posting("carol", "world", "USD", "50"))); len(got) != 2 {
		t.Fatalf("a client's hold raised %v, want 2 alerts", got)
	}
	wantRefused(t, l.s, hold("h3", 0, posting("carol", "world", "USD", "61")), domain.ErrRuleRejected, "postings[0].amount")
	big := raised
	big.Figures = map[string]string{"amount": "61.00", "threshold": "10.00"}
	big.ID = "main:99:big:carol"
	if _, err := decide(l.s, big.AlertHold()); err != nil {
		t.Fatalf("a rule's hold of 61.00, over the before-commit cap: %v", err)
	}
}
