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
//     tries the page again next round;
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
}

// alertPass is one of the alerter's two: which alerts it reads, the
// command it submits for each, and how far it got.
type alertPass struct {
	name    string
	read    func(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error)
	command func(a *domain.Alert) domain.Command
	// gapless submits each page atomically and stops the pass at an alert
	// the writer refuses: no alert after it is acted on before it.
	gapless bool
	// after is the last alert submitted; nil until read from the writer.
	after *domain.AlertMark
}

// NewAlerter returns the alerter of ledger, which submits through the
// writer that writer returns (looked up each round: writers come and go).
func NewAlerter(ledger string, alerts AlertSource, writer func() (AlertWriter, error), logger *slog.Logger) *Alerter {
	if logger == nil {
		logger = slog.Default()
	}
	return &Alerter{ledger: ledger, alerts: alerts, writer: writer, logger: logger.With("ledger", ledger),
		raise: alertPass{name: "raise", read: alerts.AlertsAfter, gapless: true, command: func(a *domain.Alert) domain.Command {
			return &domain.RaiseAlert{Alert: domain.AlertRaisedOf(a)}
		}},
		freeze: alertPass{name: "freeze", read: alerts.FreezingAlerts, command: func(a *domain.Alert) domain.Command {
			return &domain.FreezeAccount{AccountID: a.Account, Alert: &domain.AlertMark{Position: a.Position, ID: a.ID},
				Reason: fmt.Sprintf("alert %s of rule %s version %d", a.ID, a.RuleID, a.RuleVersion)}
		}},
	}
}

// Run acts on new alerts every interval until ctx ends.
func (f *Alerter) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		busy, err := f.Round(ctx)
		if err != nil && ctx.Err() == nil {
			f.logger.Warn("alerter: retrying next round", "err", err)
		}
		if busy && err == nil {
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
		f.raise.after, f.freeze.after = &raised, &frozen
	}
	for _, p := range []*alertPass{&f.raise, &f.freeze} {
		full, err := f.pass(ctx, p)
		if err != nil {
			return false, fmt.Errorf("%s: %w", p.name, err)
		}
		busy = busy || full
	}
	return busy, nil
}

// pass submits p's commands for the alerts after p.after, page by page;
// full says it read alertPagesMax full pages.
func (f *Alerter) pass(ctx context.Context, p *alertPass) (full bool, err error) {
	for range alertPagesMax {
		alerts, err := p.read(ctx, f.ledger, *p.after, alertPage)
		if err != nil {
			return false, err
		}
		if len(alerts) == 0 {
			return false, nil
		}
		cmds := make([]domain.Command, len(alerts))
		for i := range alerts {
			cmds[i] = p.command(&alerts[i])
		}
		w, err := f.writer()
		if err != nil {
			return false, fmt.Errorf("writer: %w", err)
		}
		results, err := w.SubmitWith(ctx, cmds, commands.SubmitOptions{Atomic: p.gapless})
		if err != nil {
			return false, fmt.Errorf("%d alerts from %s: %w", len(cmds), alerts[0].ID, err)
		}
		for i, r := range results {
			if r.Err == nil || errors.Is(r.Err, domain.ErrExists) || errors.Is(r.Err, commands.ErrLinkedItemFailed) {
				continue
			}
			if p.gapless {
				// Nothing of the page was applied: p.after stays.
				return false, fmt.Errorf("alert %s refused: %w", alerts[i].ID, r.Err)
			}
			// An account closed since cannot be frozen: nothing to retry.
			f.logger.Warn("alerter: alert not acted on", "pass", p.name, "alert", alerts[i].ID, "account", alerts[i].Account, "err", r.Err)
		}
		last := alerts[len(alerts)-1]
		p.after = &domain.AlertMark{Position: last.Position, ID: last.ID}
		if len(alerts) < alertPage {
			return false, nil
		}
	}
	return true, nil
}
