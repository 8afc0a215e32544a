package domain_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// evalLog decides and applies commands on a fresh state and folds each event
// through an Evaluator, returning the alerts' ids and transfers.
type evalLog struct {
	t  *testing.T
	s  *domain.State
	ev *domain.Evaluator
}

func newEvalLog(t *testing.T) *evalLog {
	l := &evalLog{t: t, s: domain.NewState(), ev: domain.NewEvaluator("main", nil)}
	l.step(asset("USD", 2))
	l.step(account("world", "USD", domain.SideCredit, "", ""))
	l.step(account("carol", "USD", domain.SideCredit, "", ""))
	return l
}

func (l *evalLog) step(c domain.Command) []string {
	l.t.Helper()
	e, err := decide(l.s, c)
	if err != nil {
		l.t.Fatalf("%T %s: %v", c, c.CommandID(), err)
	}
	pos := l.s.Position() + 1
	l.s.Evolve(pos, e)
	var got []string
	for _, a := range l.ev.Apply(pos, now, e) {
		got = append(got, fmt.Sprintf("%s v%d available=%s", a.TransferID, a.RuleVersion, a.Figures["available"]))
	}
	return got
}

func crossing(level string, disabled bool) *domain.DefineRule {
	return &domain.DefineRule{Rule: domain.Rule{ID: "low", Asset: "USD", AccountPattern: "carol", Disabled: disabled,
		BalanceCrossing: &domain.BalanceCrossingRule{Crossing: domain.CrossingBelow}}, Level: level}
}

// TestCrossingRearmsOnANewVersion: a balance crossing rule whose level is
// changed (version 2) fires when the balance then crosses the new level.
// The evaluator kept the "past the level" flag of version 1 (computed
// against the old level), and the crossing of the new level was never
// alerted.
func TestCrossingRearmsOnANewVersion(t *testing.T) {
	l := newEvalLog(t)
	l.step(crossing("100", false))
	l.step(transfer("fund", posting("world", "carol", "USD", "150")))
	if got := l.step(transfer("t1", posting("carol", "world", "USD", "100"))); len(got) != 1 { // 150 -> 50: below 100
		t.Fatalf("v1 crossing: alerts %v, want one", got)
	}
	l.step(crossing("10", false)) // version 2: level 10; carol (50) is above it: armed
	// 50 -> 5: crosses below 10.
	if got := l.step(transfer("t2", posting("carol", "world", "USD", "45"))); len(got) != 1 {
		t.Fatalf("carol went from 50 to 5, crossing version 2's level 10: alerts %v, want one", got)
	}
}

// TestCrossingRearmsWhenEnabledAgain: a crossing rule disabled while the
// balance came back above the level, then enabled again, fires on the next
// crossing. The evaluator kept the flag from before it was disabled (no
// movement re-armed it meanwhile) and stayed silent.
func TestCrossingRearmsWhenEnabledAgain(t *testing.T) {
	l := newEvalLog(t)
	l.step(crossing("100", false))
	l.step(transfer("fund", posting("world", "carol", "USD", "150")))
	if got := l.step(transfer("t1", posting("carol", "world", "USD", "100"))); len(got) != 1 { // 150 -> 50
		t.Fatalf("crossing: alerts %v, want one", got)
	}
	l.step(crossing("100", true))                                                              // v2: disabled
	l.step(transfer("back", posting("world", "carol", "USD", "150")))                          // 50 -> 200: back above
	l.step(crossing("100", false))                                                             // v3: enabled again
	if got := l.step(transfer("t2", posting("carol", "world", "USD", "150"))); len(got) != 1 { // 200 -> 50
		t.Fatalf("carol went from 200 to 50 under an enabled rule of level 100: alerts %v, want one", got)
	}
}

// TestNewRuleIDsHoldNoColon: an alert's id joins the rule's id and the
// account's with ':', and both could hold one: rule "a" on account "b:c" and
// rule "a:b" on account "c" raised the one id main:N:a:b:c on a transfer
// from b:c to c, and the evaluator kept one of the two alerts (and so one
// freeze). A new rule's id may not hold ':'.
func TestNewRuleIDsHoldNoColon(t *testing.T) {
	l := newEvalLog(t)
	_, err := decide(l.s, &domain.DefineRule{Rule: domain.Rule{ID: "a:b", Asset: "USD", AccountPattern: "c",
		Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "100"})
	if !errors.Is(err, domain.ErrInvalidField) || !strings.Contains(err.Error(), "id") {
		t.Fatalf("a rule a:b: %v, want its id refused", err)
	}
}

// TestVelocityRefusesAWindowItCannotCount: the writer lets go of postings
// older than the longest window behind an account's newest; a transfer
// backdated so far that its window reaches them cannot be counted, and is
// refused (the rule errs on the side of refusing), after a snapshot too.
// It went through uncounted: here the third debit in an hour passed a
// max_count 2 rule. A backdated transfer whose window the rings still hold
// is counted as before.
func TestVelocityRefusesAWindowItCannotCount(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "1000")))
	apply(t, s, velocityRule("two-an-hour", 2))
	for i, back := range []time.Duration{3 * time.Hour, 2*time.Hour + 59*time.Minute, 0} {
		tr := transfer(fmt.Sprintf("t%d", i), posting("carol", "world", "USD", "1"))
		tr.EffectiveAt = now.Add(-back)
		apply(t, s, tr)
	}
	// The window (now-3h58m, now-2h58m] holds t0 and t1, which the ring let
	// go when t2 came: this would be the third.
	late := func() *domain.CreateTransfer {
		tr := transfer("late", posting("carol", "world", "USD", "1"))
		tr.EffectiveAt = now.Add(-2*time.Hour - 58*time.Minute)
		return tr
	}
	wantRefused(t, s, late(), domain.ErrRuleRejected, "effective_at")
	wantRefused(t, unmarshalSnapshot(t, marshalSnapshot(t, s)), late(), domain.ErrRuleRejected, "effective_at")
	// (now-70m, now-10m] is held whole: counted, one posting, let through.
	recent := transfer("recent", posting("carol", "world", "USD", "1"))
	recent.EffectiveAt = now.Add(-10 * time.Minute)
	apply(t, s, recent)
}
