package workflows

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of a dry run: wire contracts, documented in the proto.
const (
	// DryRunEventsMax bounds the events a dry run evaluates (in its range).
	DryRunEventsMax = 1_000_000
	// DryRunAlertsMax bounds the alerts it answers.
	DryRunAlertsMax = 1000
	// DryRunFoldMax bounds the events before the range that a dry run
	// folds (the rule's state, balances and windows, needs the log from
	// its start): a range that starts later is refused.
	DryRunFoldMax = 10_000_000
	// dryRunPage is how many records a dry run reads at once.
	dryRunPage = 10_000
)

var (
	// ErrDryRunRange means a range that ends before it starts, or past
	// the head.
	ErrDryRunRange error = domain.NewError(domain.KindInvalid, "bad range", "")
	// ErrDryRunTooFar means a range starting more than DryRunFoldMax
	// events into the log.
	ErrDryRunTooFar error = domain.NewError(domain.KindInvalid, "too far into the log",
		fmt.Sprintf("a dry run folds at most %d events before its range", DryRunFoldMax))
)

// DryRunLog is the log a dry run reads (eventstore.Store).
type DryRunLog interface {
	Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error)
	Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error)
}

// DryRunRange is what a dry run evaluates: the events from From (0: 1) to
// To (0: the head), recorded in [FromTime, ToTime) (zero: unbounded).
type DryRunRange struct {
	From, To         uint64
	FromTime, ToTime time.Time
}

// DryRunResult is a dry run's answer: the alerts in position order, the
// events evaluated (the first and last positions, 0 if none) and whether a
// bound cut the range short.
type DryRunResult struct {
	Alerts    []domain.Alert
	Events    uint64
	From, To  uint64
	Truncated bool
}

// DryRunRule evaluates rule, as an after-commit rule of version 0, over
// ledger's log with the alerts projection's evaluator (domain.Evaluator):
// the log is folded from its start, and the alerts raised by the events in
// r are answered. It changes nothing.
//
// Errors: ErrDryRunRange and ErrDryRunTooFar (as field errors); the log's.
func DryRunRule(ctx context.Context, log DryRunLog, ledger string, rule domain.Rule, r DryRunRange) (DryRunResult, error) {
	head, _, err := log.Head(ctx, ledger)
	if err != nil {
		return DryRunResult{}, err
	}
	from, to := max(r.From, 1), r.To
	switch {
	case to == 0:
		to = head
	case to > head:
		return DryRunResult{}, &domain.FieldError{Field: "to_position", Err: fmt.Errorf("%d, the head is %d: %w", to, head, ErrDryRunRange)}
	}
	switch {
	case r.To != 0 && from > to:
		return DryRunResult{}, &domain.FieldError{Field: "from_position", Err: fmt.Errorf("%d after to_position %d: %w", from, to, ErrDryRunRange)}
	case r.From > head:
		// Refused as a to_position past the head is: an empty answer would
		// read as "this rule flags nothing".
		return DryRunResult{}, &domain.FieldError{Field: "from_position", Err: fmt.Errorf("%d, the head is %d: %w", r.From, head, ErrDryRunRange)}
	}
	if !r.FromTime.IsZero() && !r.ToTime.IsZero() && !r.FromTime.Before(r.ToTime) {
		return DryRunResult{}, &domain.FieldError{Field: "to_time", Err: fmt.Errorf("not after from_time: %w", ErrDryRunRange)}
	}
	if from-1 > DryRunFoldMax {
		return DryRunResult{}, &domain.FieldError{Field: "from_position", Err: fmt.Errorf("%d: %w", from, ErrDryRunTooFar)}
	}
	ev := domain.NewEvaluator(ledger, &rule)
	var (
		out    DryRunResult
		folded uint64
	)
	in := func(rec *eventstore.Record) bool {
		return rec.Position >= from && (r.FromTime.IsZero() || !rec.RecordedAt.Before(r.FromTime))
	}
	for next := uint64(1); next <= to; {
		recs, err := log.Read(ctx, ledger, next, int(min(dryRunPage, to-next+1)))
		if err != nil {
			return DryRunResult{}, err
		}
		if len(recs) == 0 {
			return DryRunResult{}, fmt.Errorf("dry run: %s's log ends before %d", ledger, next)
		}
		for i := range recs {
			rec := &recs[i]
			next = rec.Position + 1
			// Recorded times never go back: past ToTime, nothing more is in.
			if !r.ToTime.IsZero() && !rec.RecordedAt.Before(r.ToTime) {
				return out, nil
			}
			if !in(rec) {
				if folded++; folded > DryRunFoldMax {
					return DryRunResult{}, &domain.FieldError{Field: "from_time", Err: fmt.Errorf("%d events before it: %w", folded, ErrDryRunTooFar)}
				}
			}
			e, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
			if err != nil {
				return DryRunResult{}, fmt.Errorf("dry run: record %d: %w", rec.Position, err)
			}
			alerts := ev.Apply(rec.Position, rec.RecordedAt, e)
			if !in(rec) {
				continue
			}
			if out.Events == DryRunEventsMax || len(out.Alerts)+len(alerts) > DryRunAlertsMax {
				out.Truncated = true
				return out, nil
			}
			out.Events++
			out.From = cmp.Or(out.From, rec.Position)
			out.To = rec.Position
			out.Alerts = append(out.Alerts, alerts...)
		}
	}
	return out, nil
}
