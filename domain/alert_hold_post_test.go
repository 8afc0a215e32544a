package domain_test

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestHoldRuleAlertAtAPostHasItsEffectiveTime: a hold rule fires at the
// post of a client's hold (PendingPosted), and its alert carries the post's
// effective time, as the same deposit made in one phase carries the
// transfer's.
func TestHoldRuleAlertAtAPostHasItsEffectiveTime(t *testing.T) {
	l := newEvalLog(t)
	l.step(account("dave", "USD", domain.SideCredit, "0", ""))
	l.step(holdRule("big", func(r *domain.DefineRule) { r.Rule.AccountPattern = "dave" }))
	l.step(hold("dep", 0, posting("world", "dave", "USD", "500")))
	e, err := decide(l.s, postHold("dep-post", "dep"))
	if err != nil {
		t.Fatal(err)
	}
	post := e.(domain.PendingPosted)
	if post.EffectiveAt.IsZero() {
		t.Fatal("the post has no effective time")
	}
	pos := l.s.Position() + 1
	l.s.Evolve(pos, e)
	alerts := l.ev.Apply(pos, now, e)
	if len(alerts) != 1 {
		t.Fatalf("the post of a 500.00 deposit to dave raised %d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	if a.TransferID != "dep-post" || a.Figures["hold"] != "500.00" || a.HoldAccount != "world" {
		t.Fatalf("alert %+v", a)
	}
	if !a.EffectiveAt.Equal(post.EffectiveAt) {
		t.Fatalf("the alert at the post has effective_at %v, the post's is %v", a.EffectiveAt, post.EffectiveAt)
	}
}
