package domain_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
)

// wantRefused decides c on s and checks that it is refused with sentinel,
// naming field.
func wantRefused(t *testing.T, s *domain.State, c domain.Command, sentinel error, field string) error {
	t.Helper()
	_, err := decide(s, c)
	if !errors.Is(err, sentinel) || domain.FieldOf(err) != field {
		t.Fatalf("%T %s: got %v (field %q), want %v naming %q", c, c.CommandID(), err, domain.FieldOf(err), sentinel, field)
	}
	return err
}

func TestFreezeRefusesDebitsOnly(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "100")))
	at := apply(t, s, &domain.FreezeAccount{AccountID: "carol", Reason: "stolen card"})
	if a, _ := s.Account("carol"); a.FrozenAt() != at {
		t.Fatalf("FrozenAt = %d, want %d", a.FrozenAt(), at)
	}
	wantRefused(t, s, transfer("out", posting("world", "bob", "USD", "1"), posting("carol", "world", "USD", "1")),
		domain.ErrAccountFrozen, "postings[1].debit_account")
	hold := transfer("hold", posting("carol", "world", "USD", "1"))
	hold.Pending = true
	wantRefused(t, s, hold, domain.ErrAccountFrozen, "postings[0].debit_account")
	apply(t, s, transfer("in", posting("world", "carol", "USD", "5")))

	var exists *domain.ExistsError
	if _, err := decide(s, &domain.FreezeAccount{AccountID: "carol"}); !errors.As(err, &exists) || exists.Position != at {
		t.Fatalf("freeze of a frozen account: got %v, want EXISTS at %d", err, at)
	}
	apply(t, s, &domain.UnfreezeAccount{AccountID: "carol", Reason: "found"})
	if _, err := decide(s, &domain.UnfreezeAccount{AccountID: "carol"}); !errors.As(err, &exists) {
		t.Fatalf("unfreeze of an account not frozen: got %v, want EXISTS", err)
	}
	apply(t, s, transfer("out", posting("carol", "world", "USD", "1")))
	wantRefused(t, s, &domain.FreezeAccount{AccountID: "nobody"}, domain.ErrAccountNotFound, "account_ids")
	wantRefused(t, s, &domain.FreezeAccount{AccountID: "carol", Reason: strings.Repeat("x", 1025)}, domain.ErrInvalidField, "reason")
}

func TestFreezeRefusesPostOfHold(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "100")))
	hold := transfer("hold", posting("carol", "world", "USD", "10"))
	hold.Pending = true
	apply(t, s, hold)
	apply(t, s, &domain.FreezeAccount{AccountID: "carol"})
	wantRefused(t, s, &domain.PostPending{ID: "post", PendingID: "hold"}, domain.ErrAccountFrozen, "pending_id")
	apply(t, s, &domain.VoidPending{ID: "void", PendingID: "hold"}) // a void returns money: it passes
}

// TestAlertFreezeOnce: a freeze for an alert is acted on once, in alert
// order, even after an unfreeze: a freezer's retry or restart never freezes
// again.
func TestAlertFreezeOnce(t *testing.T) {
	s := newWorld(t)
	first := &domain.AlertMark{Position: 40, ID: "l:40:r:carol"}
	apply(t, s, &domain.FreezeAccount{AccountID: "carol", Alert: first})
	// A second alert for a frozen account is recorded all the same: the mark moves.
	second := &domain.AlertMark{Position: 41, ID: "l:41:r:carol"}
	at := apply(t, s, &domain.FreezeAccount{AccountID: "carol", Alert: second})
	if got := s.AlertFreezeMark(); got != *second {
		t.Fatalf("AlertFreezeMark = %+v, want %+v", got, *second)
	}
	apply(t, s, &domain.UnfreezeAccount{AccountID: "carol"})
	for _, m := range []*domain.AlertMark{first, second, {Position: 41, ID: "l:41:a:carol"}} {
		var exists *domain.ExistsError
		if _, err := decide(s, &domain.FreezeAccount{AccountID: "carol", Alert: m}); !errors.As(err, &exists) || exists.Position != at {
			t.Fatalf("freeze for alert %s again: got %v, want EXISTS at %d", m.ID, err, at)
		}
	}
	if a, _ := s.Account("carol"); a.FrozenAt() != 0 {
		t.Fatalf("carol frozen at %d after the unfreeze", a.FrozenAt())
	}
}

func velocityRule(id string, count uint32) *domain.DefineRule {
	return &domain.DefineRule{Rule: domain.Rule{ID: id, Mode: domain.ModeBeforeCommit, Asset: "USD", AccountPattern: "carol",
		Velocity: &domain.VelocityRule{Side: domain.SideDebit, WindowSeconds: 3600, MaxCount: count}}}
}

func TestDefineRule(t *testing.T) {
	s := newWorld(t)
	threshold := func(amount string) *domain.DefineRule {
		return &domain.DefineRule{Rule: domain.Rule{ID: "big", Asset: "USD", Threshold: &domain.ThresholdRule{}}, ThresholdAmount: amount}
	}
	at := apply(t, s, threshold("100.00"))
	var exists *domain.ExistsError
	if _, err := decide(s, threshold("100")); !errors.As(err, &exists) || exists.Position != at {
		t.Fatalf("the same rule again: got %v, want EXISTS at %d", err, at)
	}
	apply(t, s, threshold("200"))
	if r, _ := s.Rule("big"); r.Version != 2 || r.Rule.Threshold.Amount.String() != "200.00" || r.Rule.Mode != domain.ModeAfterCommit {
		t.Fatalf("Rule(big) = %+v, want version 2, 200.00, after commit", r)
	}
	for _, tc := range []struct {
		name  string
		c     *domain.DefineRule
		err   error
		field string
	}{
		{"bad id", &domain.DefineRule{Rule: domain.Rule{ID: "a b", Asset: "USD", NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrInvalidField, "id"},
		{"no asset", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "EUR", NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrAssetNotFound, "asset"},
		{"scale", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", Threshold: &domain.ThresholdRule{}}, ThresholdAmount: "1.001"}, domain.ErrInvalidAmount, "threshold.amount"},
		{"no kind", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD"}}, domain.ErrInvalidField, "kind"},
		{"two kinds", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", NewCounterparty: &domain.NewCounterpartyRule{},
			DormantReactivated: &domain.DormantReactivatedRule{DormantSeconds: 7200}}}, domain.ErrInvalidField, "kind"},
		{"window", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", Velocity: &domain.VelocityRule{WindowSeconds: 32 * 86400, MaxCount: 1}}}, domain.ErrInvalidField, "velocity.window_seconds"},
		{"no limit", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", Velocity: &domain.VelocityRule{WindowSeconds: 60}}}, domain.ErrInvalidField, "velocity.max_count"},
		{"before commit counterparty", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", Mode: domain.ModeBeforeCommit,
			NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrInvalidField, "mode"},
		{"pattern", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", AccountPattern: "a::b", NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrInvalidField, "account_pattern"},
		{"metadata", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", AccountMetadata: map[string]string{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": ""},
			NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrInvalidField, "account_metadata"},
		{"dormant", &domain.DefineRule{Rule: domain.Rule{ID: "x", Asset: "USD", DormantReactivated: &domain.DormantReactivatedRule{DormantSeconds: 60}}}, domain.ErrInvalidField, "dormant_reactivated.dormant_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantRefused(t, s, tc.c, tc.err, tc.field) })
	}
}

func TestRulesBound(t *testing.T) {
	s := newWorld(t)
	for i := range domain.RulesMax {
		apply(t, s, &domain.DefineRule{Rule: domain.Rule{ID: fmt.Sprintf("r%04d", i), Asset: "USD", NewCounterparty: &domain.NewCounterpartyRule{}}})
	}
	wantRefused(t, s, &domain.DefineRule{Rule: domain.Rule{ID: "one-more", Asset: "USD", NewCounterparty: &domain.NewCounterpartyRule{}}}, domain.ErrInvalidField, "id")
	if got := len(s.Rules()); got != domain.RulesMax {
		t.Fatalf("%d rules, want %d", got, domain.RulesMax)
	}
}

// TestVelocityBeforeCommit: a before-commit velocity rule of 10 an hour
// refuses the 11th debit in the window, names the rule, and passes again
// once the window has moved on; a snapshot keeps the window.
func TestVelocityBeforeCommit(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "1000")))
	apply(t, s, velocityRule("ten-an-hour", 10))
	for i := range 10 {
		tr := transfer(fmt.Sprintf("t%d", i), posting("carol", "world", "USD", "1"))
		tr.EffectiveAt = now.Add(time.Duration(i-90) * time.Minute)
		apply(t, s, tr)
	}
	eleventh := transfer("t10", posting("carol", "world", "USD", "1"))
	eleventh.EffectiveAt = now.Add(-75 * time.Minute)
	err := wantRefused(t, s, eleventh, domain.ErrRuleRejected, "postings")
	if !strings.Contains(err.Error(), "rule ten-an-hour version 1") || !strings.Contains(err.Error(), "11 postings") {
		t.Errorf("refusal %q does not name the rule, its version and the count", err)
	}
	apply(t, s, transfer("credit", posting("world", "carol", "USD", "1"))) // credits are not counted

	back := unmarshalSnapshot(t, marshalSnapshot(t, s))
	if diff := cmp.Diff(back, s, stateEqual); diff != "" {
		t.Fatalf("state from its snapshot (-got +want):\n%s", diff)
	}
	wantRefused(t, back, eleventh, domain.ErrRuleRejected, "postings")
	// An hour after the first, it has left the window: nine and this one.
	later := transfer("t10", posting("carol", "world", "USD", "1"))
	later.EffectiveAt = now.Add(-30 * time.Minute)
	apply(t, back, later)
}

func TestThresholdAndCrossingBeforeCommit(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "1000")))
	apply(t, s, &domain.DefineRule{Rule: domain.Rule{ID: "big", Mode: domain.ModeBeforeCommit, Asset: "USD", AccountPattern: "carol",
		Threshold: &domain.ThresholdRule{Side: domain.SideDebit}}, ThresholdAmount: "1500"})
	apply(t, s, &domain.DefineRule{Rule: domain.Rule{ID: "low", Mode: domain.ModeBeforeCommit, Asset: "USD", AccountPattern: "carol",
		BalanceCrossing: &domain.BalanceCrossingRule{Crossing: domain.CrossingBelow}}, Level: "100"})
	wantRefused(t, s, transfer("t1", posting("carol", "world", "USD", "1500.01")), domain.ErrRuleRejected, "postings[0].amount")
	apply(t, s, transfer("t2", posting("world", "carol", "USD", "1600"))) // a credit above the threshold: the side is debit
	apply(t, s, transfer("t3", posting("carol", "world", "USD", "1500")))
	err := wantRefused(t, s, transfer("t4", posting("carol", "world", "USD", "1000.01")), domain.ErrRuleRejected, "postings")
	if !strings.Contains(err.Error(), "rule low version 1") {
		t.Errorf("refusal %q does not name the rule", err)
	}
	apply(t, s, transfer("t5", posting("carol", "world", "USD", "1000")))
}

// TestCrossingFiresOnce: an after-commit balance crossing rule fires once
// when the available balance goes below the level, stays silent while it
// stays below, re-arms when it comes back, and fires once more; a replay of
// the same log raises the same alerts.
func TestCrossingFiresOnce(t *testing.T) {
	s := domain.NewState()
	var log []domain.Event
	step := func(c domain.Command) uint64 {
		t.Helper()
		e, err := decide(s, c)
		if err != nil {
			t.Fatalf("%T %s: %v", c, c.CommandID(), err)
		}
		s.Evolve(s.Position()+1, e)
		log = append(log, e)
		return s.Position()
	}
	step(asset("USD", 2))
	step(account("world", "USD", domain.SideCredit, "", ""))
	step(account("carol", "USD", domain.SideCredit, "", ""))
	step(&domain.DefineRule{Rule: domain.Rule{ID: "low", Asset: "USD", AccountPattern: "carol",
		BalanceCrossing: &domain.BalanceCrossingRule{Crossing: domain.CrossingBelow}, Actions: []domain.RuleAction{domain.ActionFreeze}}, Level: "100"})
	step(transfer("fund", posting("world", "carol", "USD", "150")))
	var positions []uint64
	// carol: 90 (fires), 80, 75, 175 (re-arms), 95 (fires), 94.
	for i, amount := range []string{"60", "10", "5", "-100", "80", "1"} {
		tr := transfer(fmt.Sprintf("t%d", i), posting("carol", "world", "USD", amount))
		if amount[0] == '-' {
			tr = transfer(fmt.Sprintf("t%d", i), posting("world", "carol", "USD", amount[1:]))
		}
		positions = append(positions, step(tr))
	}
	evaluate := func() []string {
		ev := domain.NewEvaluator("main", nil)
		var got []string
		for i, e := range log {
			for _, a := range ev.Apply(uint64(i+1), now, e) {
				got = append(got, fmt.Sprintf("%s %s %s freeze=%v", a.ID, a.TransferID, a.Figures["available"], a.Freeze))
			}
		}
		return got
	}
	got := evaluate()
	want := []string{
		fmt.Sprintf("main:%d:low:carol t0 90.00 freeze=true", positions[0]),
		fmt.Sprintf("main:%d:low:carol t4 95.00 freeze=true", positions[4]),
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("alerts (-got +want):\n%s", diff)
	}
	if again := evaluate(); !slices.Equal(again, got) {
		t.Fatalf("a replay raised %v, the first %v", again, got)
	}
}
