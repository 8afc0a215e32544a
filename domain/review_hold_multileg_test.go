package domain_test

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestReviewHoldCoversEveryTriggeringPosting: a transfer crediting carol in
// two postings, both above a hold rule's threshold, raises one alert (once
// per rule and account at a position) whose "amount" figure, and so whose
// hold, is the first posting's only. Ordering the legs small-first moves
// the big one past the hold: 11.00 held of 1011.00 that crossed the rule.
func TestReviewHoldCoversEveryTriggeringPosting(t *testing.T) {
	l := newEvalLog(t)
	l.step(holdRule("big", func(r *domain.DefineRule) {
		r.Rule.AccountPattern, r.Rule.Threshold.Side = "carol", domain.SideCredit
	}))
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
	if h == nil {
		t.Fatal("no hold")
	}
	if got := h.Postings[0].Amount; got != "1011.00" {
		t.Fatalf("hold of %s, want 1011.00: every posting to carol above the threshold (the 1000.00 one is not held at all)", got)
	}
}
