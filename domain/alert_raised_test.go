package domain_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
)

// raisingLog is an evalLog whose alerts are kept whole, to raise them.
func raisingLog(t *testing.T) (*evalLog, []domain.Alert) {
	l := newEvalLog(t)
	l.step(&domain.DefineRule{Rule: domain.Rule{ID: "big", Asset: "USD", AccountPattern: "carol",
		Threshold: &domain.ThresholdRule{Side: domain.SideCredit}}, ThresholdAmount: "10"})
	var alerts []domain.Alert
	for _, id := range []string{"t1", "t2"} {
		e, err := decide(l.s, transfer(id, posting("world", "carol", "USD", "50")))
		if err != nil {
			t.Fatal(err)
		}
		pos := l.s.Position() + 1
		l.s.Evolve(pos, e)
		alerts = append(alerts, l.ev.Apply(pos, now, e)...)
	}
	if len(alerts) != 2 {
		t.Fatalf("%d alerts, want 2", len(alerts))
	}
	return l, alerts
}

// TestRaiseAlertOnceInOrder: an alert is raised once, in alert order; a
// raise at or before the mark answers EXISTS at the event that moved it,
// after a snapshot too.
func TestRaiseAlertOnceInOrder(t *testing.T) {
	l, alerts := raisingLog(t)
	second := domain.AlertRaisedOf(&alerts[1])
	at := apply(t, l.s, &domain.RaiseAlert{Alert: second})
	if got := l.s.AlertRaiseMark(); got != second.Mark() {
		t.Fatalf("AlertRaiseMark = %+v, want %+v", got, second.Mark())
	}
	if got := l.s.AlertFreezeMark(); got != (domain.AlertMark{}) {
		t.Fatalf("a raise moved the freeze mark to %+v", got)
	}
	restored := unmarshalSnapshot(t, marshalSnapshot(t, l.s))
	for _, s := range []*domain.State{l.s, restored} {
		for _, a := range alerts { // the second again, and the first: before the mark
			var exists *domain.ExistsError
			if _, err := decide(s, &domain.RaiseAlert{Alert: domain.AlertRaisedOf(&a)}); !errors.As(err, &exists) || exists.Position != at {
				t.Fatalf("raise of %s at or before the mark: %v, want EXISTS at %d", a.ID, err, at)
			}
		}
	}
}

// TestAlertRaisedCarriesTheAlert: the event gives back the alert it raises,
// field for field.
func TestAlertRaisedCarriesTheAlert(t *testing.T) {
	_, alerts := raisingLog(t)
	e := domain.AlertRaisedOf(&alerts[0])
	b, err := domain.MarshalEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := domain.UnmarshalEvent(domain.TypeAlertRaised, 1, b)
	if err != nil {
		t.Fatal(err)
	}
	got := back.(domain.AlertRaised)
	if diff := cmp.Diff(alerts[0], got.Alert()); diff != "" {
		t.Fatalf("alert through AlertRaised (-raised +back):\n%s", diff)
	}
}

// TestRaiseAlertRefusals: an alert whose id does not name it, after the
// head, of a rule or version not defined, or on no account is refused.
func TestRaiseAlertRefusals(t *testing.T) {
	l, alerts := raisingLog(t)
	for _, tc := range []struct {
		name  string
		edit  func(a *domain.AlertRaised)
		field string
		err   error
	}{
		{"id of another rule", func(a *domain.AlertRaised) { a.ID = strings.Replace(a.ID, ":big:", ":small:", 1) }, "alert.id", domain.ErrInvalidField},
		{"id without a ledger", func(a *domain.AlertRaised) { a.ID = a.ID[strings.Index(a.ID, ":"):] }, "alert.id", domain.ErrInvalidField},
		{"no version", func(a *domain.AlertRaised) { a.RuleVersion = 0 }, "alert.rule_version", domain.ErrInvalidField},
		{"too many figures", func(a *domain.AlertRaised) {
			a.Figures = map[string]string{}
			for i := range domain.AlertFiguresMax + 1 {
				a.Figures[strings.Repeat("f", i+1)] = "1"
			}
		}, "alert.figures", domain.ErrInvalidField},
		{"after the head", func(a *domain.AlertRaised) {
			a.Position = 99
			a.ID = "main:99:big:carol"
		}, "alert.position", domain.ErrInvalidField},
		{"a version not defined", func(a *domain.AlertRaised) { a.RuleVersion = 2 }, "alert.rule", domain.ErrInvalidField},
		{"a rule not defined", func(a *domain.AlertRaised) {
			a.Rule = "small"
			a.ID = strings.Replace(a.ID, ":big:", ":small:", 1)
		}, "alert.rule", domain.ErrInvalidField},
		{"no such account", func(a *domain.AlertRaised) {
			a.Account = "dave"
			a.ID = strings.Replace(a.ID, ":carol", ":dave", 1)
		}, "alert.account", domain.ErrAccountNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := domain.AlertRaisedOf(&alerts[0])
			tc.edit(&a)
			wantRefused(t, l.s, &domain.RaiseAlert{Alert: a}, tc.err, tc.field)
		})
	}
}

// TestSnapshotFormat6HasNoRaiseMark: a snapshot of the build before (format
// 6) reads as a state that raised no alert, its freeze mark kept.
func TestSnapshotFormat6HasNoRaiseMark(t *testing.T) {
	l, alerts := raisingLog(t)
	mark := &domain.AlertMark{Position: alerts[0].Position, ID: alerts[0].ID}
	apply(t, l.s, &domain.FreezeAccount{AccountID: "carol", Alert: mark})
	apply(t, l.s, &domain.RaiseAlert{Alert: domain.AlertRaisedOf(&alerts[0])})
	var b bytes.Buffer
	if err := domain.MarshalSnapshotAt(l.s, &b, 6); err != nil {
		t.Fatal(err)
	}
	s := unmarshalSnapshot(t, b.Bytes())
	if got := s.AlertRaiseMark(); got != (domain.AlertMark{}) {
		t.Fatalf("format 6: raise mark %+v, want none", got)
	}
	if got := s.AlertFreezeMark(); got != *mark {
		t.Fatalf("format 6: freeze mark %+v, want %+v", got, *mark)
	}
	if got := unmarshalSnapshot(t, marshalSnapshot(t, l.s)).AlertRaiseMark(); got != l.s.AlertRaiseMark() {
		t.Fatalf("format 7: raise mark %+v, want %+v", got, l.s.AlertRaiseMark())
	}
}
