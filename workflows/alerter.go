package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// Limits of the alerter.
const (
	// AlertEveryDefault is how often an alerter looks for new alerts: the
	// most an alert's AlertRaised and a rule's freeze lag the alert, beside
	// the projection's lag.
	AlertEveryDefault = time.Second
	// alertPage bounds the alerts one pass reads and the commands it
	// submits in one request.
	alertPage = 100
	// alertPagesMax bounds the pages of one pass, so that a flood of alerts
	// is worked through in bounded steps; a round that reached it is
	// followed by the next at once.
	alertPagesMax = 10
)

// AlertSource reads the alerts projection (queries.Service).
type AlertSource interface {
	// AlertsAfter are every alert after the mark, in raise order.
	AlertsAfter(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error)
	// FreezingAlerts are the alerts of rules with the freeze action.
	FreezingAlerts(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error)
}

// AlertWriter is the ledger's writer (commands.Writer).
type AlertWriter interface {
	Read(ctx context.Context, fn func(*domain.State)) error
	SubmitWith(ctx context.Context, cmds []domain.Command, opts commands.SubmitOptions) ([]commands.Result, error)
}

// Alerter acts on the alerts the alerts projection computed from the log,
// through the ledger's writer: one per ledger, running beside its writer.
// Each round it
//   - raises every new alert (RaiseAlert: an AlertRaised event, on the
//     stream and to webhooks), in order and without a gap: a page of raises
//     is applied whole or not at all, and one refused stops the pass, which
//     tries the page again next round. The alert of a rule with the hold
//     action is followed by its hold (AlertRaised.AlertHold), in the same
//     page; a hold the writer refuses is recorded on its AlertRaised
//     (hold_refused) and the page tried again without it;
//   - freezes the account of each new alert of a rule with the freeze action
//     (FreezeAccount carrying the alert); an account closed since is passed
//     over (logged).
//
// Each pass starts after its mark in the writer's state (AlertRaiseMark,
// AlertFreezeMark), and the writer refuses a command for an alert at or
// before the mark as EXISTS: a retry, a restart or a second alerter never
// raises or freezes twice, and an unfreeze is never undone by the alert
// that froze. What the alerter writes lands after the alert's transfer,
// which stands.
type Alerter struct {
	ledger string
	alerts AlertSource
	writer func() (AlertWriter, error)
	logger *slog.Logger
	raise  alertPass
	freeze alertPass
	// holdRefused holds, by alert id, why the writer refused an alert's
	// hold, until the page raising the alert is applied.
	holdRefused map[string]string
	// raiseStuck says the last raise pass stopped at an alert the writer
	// refuses: the freeze pass no longer waits for it (heldFirst).
	raiseStuck bool
}

// ErrWriterStopped is what an alerter's writer look-up answers (wrapped)
// while the ledger's writer is stopped and should stay so: the round is
// tried again quietly.
var ErrWriterStopped = errors.New("writer stopped")

// errRaiseRefused is the raise pass stopped at an alert the writer refuses.
var errRaiseRefused = errors.New("raise refused")

// alertPass is one of the alerter's two: which alerts it reads, the
// command it submits for each, and how far it got.
type alertPass struct {
	name string
	read func(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error)
	// commands appends the commands for a to cmds.
	commands func(cmds []domain.Command, a *domain.Alert) []domain.Command
	// gapless submits each page atomically and stops the pass at an alert
	// the writer refuses: no alert after it is acted on before it.
	gapless bool
	// upTo, when set, keeps of a page the alerts the pass may act on now.
	upTo func(alerts []domain.Alert) []domain.Alert
	// after is the last alert submitted; nil until read from the writer.
	after *domain.AlertMark
}

// NewAlerter returns the alerter of ledger, which submits through the
// writer that writer returns (looked up each round: writers come and go).
func NewAlerter(ledger string, alerts AlertSource, writer func() (AlertWriter, error), logger *slog.Logger) *Alerter {
	if logger == nil {
		logger = slog.Default()
	}
	f := &Alerter{ledger: ledger, alerts: alerts, writer: writer, logger: logger.With("ledger", ledger), holdRefused: map[string]string{}}
	f.raise = alertPass{name: "raise", read: alerts.AlertsAfter, gapless: true, commands: f.raiseCommands}
	f.freeze = alertPass{name: "freeze", read: alerts.FreezingAlerts, upTo: f.heldFirst, commands: func(cmds []domain.Command, a *domain.Alert) []domain.Command {
		return append(cmds, &domain.FreezeAccount{AccountID: a.Account, Alert: &domain.AlertMark{Position: a.Position, ID: a.ID},
			Reason: fmt.Sprintf("alert %s of rule %s version %d", a.ID, a.RuleID, a.RuleVersion)})
	}}
	return f
}

// heldFirst keeps the freezes up to the first alert of a rule that holds
// too and that the raise pass has not passed yet: the freeze would refuse
// the hold (a frozen account's debits are refused), so it waits for it,
// unless the raise pass is stopped at an alert the writer refuses. Freezes
// of rules that hold nothing go at their own pace.
func (f *Alerter) heldFirst(alerts []domain.Alert) []domain.Alert {
	if f.raiseStuck {
		// The hold cannot come before the alert raised: freeze anyway.
		return alerts
	}
	raised := f.raise.after
	for i := range alerts {
		a := &alerts[i]
		m := domain.AlertMark{Position: a.Position, ID: a.ID}
		if a.HoldAccount != "" && (raised == nil || m.After(*raised)) {
			return alerts[:i]
		}
	}
	return alerts
}

// raiseCommands raises a, and places its rule's hold unless the writer
// refused it before.
func (f *Alerter) raiseCommands(cmds []domain.Command, a *domain.Alert) []domain.Command {
	e := domain.AlertRaisedOf(a)
	if e.HoldAccount != "" {
		e.HoldRefused = f.holdRefused[a.ID]
	}
	cmds = append(cmds, &domain.RaiseAlert{Alert: e})
	if hold := e.AlertHold(); hold != nil {
		cmds = append(cmds, hold)
	}
	return cmds
}

// holdRefusedMax bounds the reason recorded for a refused hold (as the
// domain's hold_refused).
const holdRefusedMax = domain.FreezeReasonLenMax

// Run acts on new alerts every interval until ctx ends.
func (f *Alerter) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		busy, err := f.Round(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, ErrWriterStopped):
			f.logger.Debug("alerter: waiting for the writer", "ledger", f.ledger, "err", err)
		default:
			f.logger.Warn("alerter: retrying next round", "err", err)
		}
		if busy {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round raises the alerts raised since the last round, then submits the
// freezes of those whose rule freezes, at most alertPagesMax pages of each;
// busy says a pass read all its pages (more may wait).
//
// Errors: the writer's (commands.ErrClosed, ErrUnavailable, ...), the
// alerts' database errors, ctx's, and a raise refused: the alerts not acted
// on are tried again.
func (f *Alerter) Round(ctx context.Context) (busy bool, err error) {
	// The writer is looked up only when needed: a look-up may start it, and
	// an idle ledger's writer should stay stopped.
	if f.raise.after == nil || f.freeze.after == nil {
		w, err := f.writer()
		if err != nil {
			return false, fmt.Errorf("writer: %w", err)
		}
		var raised, frozen domain.AlertMark
		if err := w.Read(ctx, func(s *domain.State) { raised, frozen = s.AlertRaiseMark(), s.AlertFreezeMark() }); err != nil {
			return false, fmt.Errorf("alert marks: %w", err)
		}
		// The marks may name the ledger a log was imported from: the
		// alerts read model names this one, and is read in its id order.
		raised, frozen = f.here(raised), f.here(frozen)
		f.raise.after, f.freeze.after = &raised, &frozen
	}
	// Each pass runs whatever the other's outcome: a raise refused (and
	// retried every round) must not stop a rule's freezes.
	var errs []error
	for _, p := range []*alertPass{&f.raise, &f.freeze} {
		full, err := f.pass(ctx, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
		if p == &f.raise {
			f.raiseStuck = errors.Is(err, errRaiseRefused)
		}
		busy = busy || full
	}
	return busy, errors.Join(errs...)
}

// here is m with its alert id naming this ledger.
func (f *Alerter) here(m domain.AlertMark) domain.AlertMark {
	if m.ID != "" {
		m.ID = f.ledger + ":" + domain.AlertKey(m.ID)
	}
	return m
}

// pass submits p's commands for the alerts after p.after, page by page;
// full says it read alertPagesMax full pages.
func (f *Alerter) pass(ctx context.Context, p *alertPass) (full bool, err error) {
	for range alertPagesMax {
		alerts, err := p.read(ctx, f.ledger, *p.after, alertPage)
		if err != nil {
			return false, err
		}
		read := len(alerts)
		if p.upTo != nil {
			alerts = p.upTo(alerts)
		}
		if len(alerts) == 0 {
			return false, nil
		}
		// A page is submitted again for each hold refused in it, or said
		// refused and placed after all: a bounded number of times.
		for again, tries := true, 0; again; tries++ {
			if tries > 2*len(alerts) {
				return false, fmt.Errorf("%d alerts from %s: holds refused, then not, %d times", len(alerts), alerts[0].ID, tries)
			}
			if again, err = f.submit(ctx, p, alerts); err != nil {
				return false, err
			}
		}
		clear(f.holdRefused)
		last := alerts[len(alerts)-1]
		p.after = &domain.AlertMark{Position: last.Position, ID: last.ID}
		if read < alertPage || len(alerts) < read {
			return false, nil
		}
	}
	return true, nil
}

// submit submits p's commands for a page of alerts; again says a hold was
// refused, which its alert now records: the page is to be submitted again.
func (f *Alerter) submit(ctx context.Context, p *alertPass, alerts []domain.Alert) (again bool, err error) {
	var (
		cmds []domain.Command
		of   []int // of[i] is the alert of cmds[i]
	)
	for i := range alerts {
		n := len(cmds)
		cmds = p.commands(cmds, &alerts[i])
		for range len(cmds) - n {
			of = append(of, i)
		}
	}
	w, err := f.writer()
	if err != nil {
		return false, fmt.Errorf("writer: %w", err)
	}
	results, err := w.SubmitWith(ctx, cmds, commands.SubmitOptions{Atomic: p.gapless})
	if err != nil {
		return false, fmt.Errorf("%d alerts from %s: %w", len(alerts), alerts[0].ID, err)
	}
	for i, r := range results {
		if r.Err == nil || errors.Is(r.Err, domain.ErrExists) || errors.Is(r.Err, commands.ErrLinkedItemFailed) {
			continue
		}
		a := &alerts[of[i]]
		if hold, ok := cmds[i].(*domain.CreateTransfer); ok && hold.Alert != "" {
			// Nothing of the page was applied: the alert records why its
			// hold was not placed, and the page goes again without it.
			f.holdRefused[a.ID] = domain.StorableText(r.Err.Error(), holdRefusedMax)
			f.logger.Warn("alerter: hold refused", "alert", a.ID, "account", a.Account, "err", r.Err)
			return true, nil
		}
		if _, raise := cmds[i].(*domain.RaiseAlert); raise && errors.Is(r.Err, domain.ErrHoldNotRefused) {
			// Said refused, the hold would be placed now: the page goes
			// again with it.
			delete(f.holdRefused, a.ID)
			return true, nil
		}
		if p.gapless {
			// Nothing of the page was applied: p.after stays.
			return false, fmt.Errorf("alert %s: %w: %w", a.ID, errRaiseRefused, r.Err)
		}
		// An account closed since cannot be frozen: nothing to retry.
		f.logger.Warn("alerter: alert not acted on", "pass", p.name, "alert", a.ID, "account", a.Account, "err", r.Err)
	}
	return false, nil
}
