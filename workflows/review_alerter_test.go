package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/workflows"
)

// reviewAlerts is an alerts read model in memory.
type reviewAlerts struct{ all []domain.Alert }

func (r *reviewAlerts) read(after domain.AlertMark, limit int, freezing bool) []domain.Alert {
	var out []domain.Alert
	for _, a := range r.all {
		if (a.Position > after.Position || a.Position == after.Position && a.ID > after.ID) && (!freezing || a.Freeze) {
			out = append(out, a)
		}
	}
	return out[:min(len(out), limit)]
}

func (r *reviewAlerts) AlertsAfter(_ context.Context, _ string, after domain.AlertMark, limit int) ([]domain.Alert, error) {
	return r.read(after, limit, false), nil
}

func (r *reviewAlerts) FreezingAlerts(_ context.Context, _ string, after domain.AlertMark, limit int) ([]domain.Alert, error) {
	return r.read(after, limit, true), nil
}

// reviewWriter validates commands as commands.Writer does before queueing
// them (an atomic request with an invalid item applies nothing), and keeps
// those it would apply.
type reviewWriter struct{ applied []domain.Command }

func (w *reviewWriter) Read(_ context.Context, fn func(*domain.State)) error {
	fn(domain.NewState())
	return nil
}

func (w *reviewWriter) SubmitWith(_ context.Context, cmds []domain.Command, opts commands.SubmitOptions) ([]commands.Result, error) {
	results := make([]commands.Result, len(cmds))
	invalid := false
	for i, c := range cmds {
		if err := c.Validate(); err != nil {
			results[i].Err, invalid = err, true
		}
	}
	if invalid && opts.Atomic {
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = commands.ErrLinkedItemFailed
			}
		}
		return results, nil
	}
	for i, c := range cmds {
		if results[i].Err == nil {
			w.applied = append(w.applied, c)
		}
	}
	return results, nil
}

// TestAlerterFreezesWhileARaiseIsRefused: the freezer used to act on every
// freezing alert on its own. Now one alert the writer refuses to raise (here
// a row of the alerts read model with one figure too many, as an edit or an
// older build may leave it; the docs say the raise pass then stops at that
// alert and retries every second) makes every Round return before the
// freeze pass: a rule's FREEZE on a later alert (a fraud stop) never
// happens, however many rounds run.
func TestAlerterFreezesWhileARaiseIsRefused(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	figures := map[string]string{}
	for i := range domain.AlertFiguresMax + 1 {
		figures[fmt.Sprint("f", i)] = "1"
	}
	src := &reviewAlerts{all: []domain.Alert{
		{ID: "main:5:watch:alice", RuleID: "watch", RuleVersion: 1, Position: 5, TransferID: "t1", Account: "alice",
			Asset: "USD", Figures: figures, RecordedAt: at},
		{ID: "main:6:stop:mallory", RuleID: "stop", RuleVersion: 1, Position: 6, TransferID: "t2", Account: "mallory",
			Asset: "USD", Figures: map[string]string{"amount": "900.00", "threshold": "500.00"}, Freeze: true, RecordedAt: at},
	}}
	w := &reviewWriter{}
	a := workflows.NewAlerter("main", src, func() (workflows.AlertWriter, error) { return w, nil }, nil)
	for range 3 {
		_, _ = a.Round(context.Background())
	}
	froze := slices.ContainsFunc(w.applied, func(c domain.Command) bool {
		f, ok := c.(*domain.FreezeAccount)
		return ok && f.AccountID == "mallory"
	})
	if !froze {
		t.Fatalf("after 3 rounds, mallory's freezing alert was not acted on (applied: %d commands)", len(w.applied))
	}
}
