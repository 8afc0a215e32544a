package domain_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func holdRule(id string, edit func(r *domain.DefineRule)) *domain.DefineRule {
	c := &domain.DefineRule{Rule: domain.Rule{ID: id, Asset: "USD", Actions: []domain.RuleAction{domain.ActionHold}, HoldAccount: "world",
		Threshold: &domain.ThresholdRule{Side: domain.SideCredit}}, ThresholdAmount: "10"}
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
		{"on debits", func(r *domain.DefineRule) { r.Rule.Threshold.Side = domain.SideDebit }, domain.ErrInvalidField, "actions[0]"},
		{"on either side", func(r *domain.DefineRule) { r.Rule.Threshold.Side = 0 }, domain.ErrInvalidField, "actions[0]"},
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
	// Its own id, but no AlertRaised asks for it.
	wantRefused(t, s, &domain.CreateTransfer{ID: id, Pending: true, Alert: "main:5:big:carol",
		Postings: []domain.PostingInput{posting("carol", "world", "USD", "1")}}, domain.ErrInvalidField, "alert")
}

// TestAlertHoldIsNotCounted: a hold rule's alert, raised, places its hold,
// which no rule counts: neither a rule it would fire (the hold credits the
// hold account above a threshold; a hold rule there would hold again, and
// again), nor a before-commit rule that would refuse it.
func TestAlertHoldIsNotCounted(t *testing.T) {
	l := newEvalLog(t)
	l.step(holdRule("big", nil)) // credits above 10, held towards world
	// A rule that would fire on the hold: world credited above 10.
	l.step(&domain.DefineRule{Rule: domain.Rule{ID: "watch", Asset: "USD", AccountPattern: "world",
		Threshold: &domain.ThresholdRule{Side: domain.SideCredit}}, ThresholdAmount: "10"})
	l.step(&domain.DefineRule{Rule: domain.Rule{ID: "cap", Mode: domain.ModeBeforeCommit, Asset: "USD", AccountPattern: "carol",
		Threshold: &domain.ThresholdRule{Side: domain.SideDebit}}, ThresholdAmount: "60"})
	raise := func(amount string) domain.AlertRaised {
		t.Helper()
		e, err := decide(l.s, transfer("in-"+amount, posting("world", "carol", "USD", amount)))
		if err != nil {
			t.Fatal(err)
		}
		pos := l.s.Position() + 1
		l.s.Evolve(pos, e)
		alerts := l.ev.Apply(pos, now, e)
		if len(alerts) != 1 || alerts[0].Account != "carol" || alerts[0].HoldAccount != "world" {
			t.Fatalf("alerts %+v, want one on carol holding towards world", alerts)
		}
		raised := domain.AlertRaisedOf(&alerts[0])
		l.step(&domain.RaiseAlert{Alert: raised})
		return raised
	}
	raised := raise("50")
	h := raised.AlertHold()
	if h == nil || h.Postings[0] != posting("carol", "world", "USD", "50.00") {
		t.Fatalf("hold %+v, want 50.00 from carol to world", h)
	}
	if got := l.step(h); len(got) != 0 { // world credited 50.00: not counted
		t.Fatalf("the rule's own hold raised %v", got)
	}
	// A client's hold of the same is counted (world credited above 10).
	if got := l.step(hold("h2", 0, posting("carol", "world", "USD", "20"))); len(got) != 1 {
		t.Fatalf("a client's hold raised %v, want 1 alert", got)
	}
	// Above the before-commit cap on carol's debits: a client's hold is
	// refused, the rule's is not.
	wantRefused(t, l.s, hold("h3", 0, posting("carol", "world", "USD", "61")), domain.ErrRuleRejected, "postings[0].amount")
	big := raise("61")
	if _, err := decide(l.s, big.AlertHold()); err != nil {
		t.Fatalf("a rule's hold of 61.00, over the before-commit cap: %v", err)
	}
}

// TestAlertHoldFollowsItsAlert: a hold carrying an alert is the one the
// AlertRaised just before asks for, and nothing else; a hold said refused
// must be one the writer would refuse.
func TestAlertHoldFollowsItsAlert(t *testing.T) {
	l := newEvalLog(t)
	l.step(holdRule("big", nil))
	e, err := decide(l.s, transfer("t1", posting("world", "carol", "USD", "11"), posting("world", "carol", "USD", "1000")))
	if err != nil {
		t.Fatal(err)
	}
	pos := l.s.Position() + 1
	l.s.Evolve(pos, e)
	alerts := l.ev.Apply(pos, now, e)
	if len(alerts) != 1 {
		t.Fatalf("alerts %+v, want 1", alerts)
	}
	raised := domain.AlertRaisedOf(&alerts[0])
	h := raised.AlertHold()
	if got := h.Postings[0].Amount; got != "1011.00" {
		t.Fatalf("hold of %s, want 1011.00: every posting crediting carol above the threshold", got)
	}
	// No AlertRaised before it: refused.
	wantRefused(t, l.s, h, domain.ErrInvalidField, "alert")
	// Said refused while carol has the money: the raise is refused.
	refused := raised
	refused.HoldRefused = "made up"
	wantRefused(t, l.s, &domain.RaiseAlert{Alert: refused}, domain.ErrInvalidField, "alert.hold_refused")
	l.step(&domain.RaiseAlert{Alert: raised})
	other := *h
	other.Postings = []domain.PostingInput{posting("carol", "world", "USD", "11.00")}
	wantRefused(t, l.s, &other, domain.ErrInvalidField, "alert")
	l.step(h)
	again := *h
	if _, err := decide(l.s, &again); !errors.Is(err, domain.ErrExists) {
		t.Fatalf("the hold again: %v, want EXISTS", err)
	}
	// Posted after review, it credits world: a hold rule watching world
	// does not hold it again (it came from a rule's hold, not from outside).
	l.step(holdRule("world-in", func(r *domain.DefineRule) { r.Rule.AccountPattern, r.Rule.HoldAccount = "world", "carol" }))
	if got := l.step(postHold("p1", h.ID)); len(got) != 0 {
		t.Fatalf("the post of a rule's hold raised %v", got)
	}
	if got := l.step(transfer("t2", posting("carol", "world", "USD", "20"))); len(got) != 2 { // big and world-in
		t.Fatalf("a transfer crediting world 20.00 raised %v, want 2 alerts", got)
	}
}

// TestRaiseAlertHoldAccountByVersion: an alert's hold account is its rule
// version's, whatever version is in force, after a snapshot too (format 7
// keeps the versions' hold accounts).
func TestRaiseAlertHoldAccountByVersion(t *testing.T) {
	s := newWorld(t)
	at := apply(t, s, transfer("in", posting("world", "carol", "USD", "50")))
	apply(t, s, holdRule("big", nil)) // version 1: towards world
	apply(t, s, holdRule("big", func(r *domain.DefineRule) { r.Rule.HoldAccount = "alice" }))
	alert := func(version uint32, hold string) *domain.RaiseAlert {
		return &domain.RaiseAlert{Alert: domain.AlertRaised{ID: "main:" + strconv.FormatUint(at, 10) + ":big:carol", Rule: "big",
			RuleVersion: version, Position: at, TransferID: "in", Account: "carol", Asset: "USD", HoldAccount: hold,
			Figures: map[string]string{"amount": "50.00", "hold": "50.00", "threshold": "10.00"}, RecordedAt: now}}
	}
	for _, st := range []*domain.State{s, unmarshalSnapshot(t, marshalSnapshot(t, s))} {
		for _, c := range []*domain.RaiseAlert{alert(1, "world"), alert(2, "alice")} {
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := domain.Decide(st, c, now); err != nil {
				t.Fatalf("alert of version %d holding towards %s: %v", c.Alert.RuleVersion, c.Alert.HoldAccount, err)
			}
		}
		for _, c := range []*domain.RaiseAlert{alert(1, "alice"), alert(2, "world"), alert(1, "")} {
			wantRefused(t, st, c, domain.ErrInvalidField, "alert.hold_account")
		}
	}
}
