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

// Limits of the freezer.
const (
	// FreezeEveryDefault is how often a freezer looks for new alerts: the
	// most a rule's freeze lags its alert, beside the projection's lag.
	FreezeEveryDefault = time.Second
	// freezePage bounds the alerts one round reads and the freezes it
	// submits in one request.
	freezePage = 100
	// freezePagesMax bounds the pages of one round, so that a flood of
	// alerts is worked through in bounded steps (the rest: next round).
	freezePagesMax = 10
)

// FreezeAlerts reads the alerts whose rule freezes (queries.Service).
type FreezeAlerts interface {
	FreezingAlerts(ctx context.Context, ledger string, after domain.AlertMark, limit int) ([]domain.Alert, error)
}

// FreezeWriter is the ledger's writer (commands.Writer).
type FreezeWriter interface {
	Read(ctx context.Context, fn func(*domain.State)) error
	Submit(ctx context.Context, cmds []domain.Command) ([]commands.Result, error)
}

// Freezer turns the alerts of rules with the freeze action into
// FreezeAccount commands, through the ledger's writer: one per ledger,
// running beside its writer. It starts after the ledger's AlertFreezeMark
// (the last alert acted on, in the writer's state), and each freeze carries
// its alert, which the writer refuses as EXISTS once at or before the mark:
// a retry, a restart or a second freezer never freezes twice, and an
// unfreeze is never undone by the alert that froze. The freeze lands after
// the alert's transfer, which stands.
type Freezer struct {
	ledger string
	alerts FreezeAlerts
	writer func() (FreezeWriter, error)
	logger *slog.Logger
	// after is the last alert submitted; nil until read from the writer.
	after *domain.AlertMark
}

// NewFreezer returns the freezer of ledger, which submits through the
// writer that writer returns (looked up each round: writers come and go).
func NewFreezer(ledger string, alerts FreezeAlerts, writer func() (FreezeWriter, error), logger *slog.Logger) *Freezer {
	if logger == nil {
		logger = slog.Default()
	}
	return &Freezer{ledger: ledger, alerts: alerts, writer: writer, logger: logger.With("ledger", ledger)}
}

// Run acts on new alerts every interval until ctx ends.
func (f *Freezer) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := f.Round(ctx); err != nil && ctx.Err() == nil {
			f.logger.Warn("freezer: retrying next round", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round submits the freezes of the alerts raised since the last round, at
// most freezePagesMax pages of them.
//
// Errors: the writer's (commands.ErrClosed, ErrUnavailable, ...), the
// alerts' database errors, ctx's: the alerts not acted on are tried again.
func (f *Freezer) Round(ctx context.Context) error {
	// The writer is looked up only when needed: a look-up may start it, and
	// an idle ledger's writer should stay stopped.
	if f.after == nil {
		w, err := f.writer()
		if err != nil {
			return fmt.Errorf("writer: %w", err)
		}
		var mark domain.AlertMark
		if err := w.Read(ctx, func(s *domain.State) { mark = s.AlertFreezeMark() }); err != nil {
			return fmt.Errorf("alert freeze mark: %w", err)
		}
		f.after = &mark
	}
	for range freezePagesMax {
		alerts, err := f.alerts.FreezingAlerts(ctx, f.ledger, *f.after, freezePage)
		if err != nil {
			return err
		}
		if len(alerts) == 0 {
			return nil
		}
		cmds := make([]domain.Command, len(alerts))
		for i := range alerts {
			a := &alerts[i]
			cmds[i] = &domain.FreezeAccount{AccountID: a.Account, Alert: &domain.AlertMark{Position: a.Position, ID: a.ID},
				Reason: fmt.Sprintf("alert %s of rule %s version %d", a.ID, a.RuleID, a.RuleVersion)}
		}
		w, err := f.writer()
		if err != nil {
			return fmt.Errorf("writer: %w", err)
		}
		results, err := w.Submit(ctx, cmds)
		if err != nil {
			return fmt.Errorf("freeze for %d alerts from %s: %w", len(cmds), alerts[0].ID, err)
		}
		for i, r := range results {
			// An account closed since cannot be frozen: nothing to retry.
			if r.Err != nil && !errors.Is(r.Err, domain.ErrExists) {
				f.logger.Warn("freezer: alert not acted on", "alert", alerts[i].ID, "account", alerts[i].Account, "err", r.Err)
			}
		}
		last := alerts[len(alerts)-1]
		f.after = &domain.AlertMark{Position: last.Position, ID: last.ID}
		if len(alerts) < freezePage {
			return nil
		}
	}
	return nil
}
