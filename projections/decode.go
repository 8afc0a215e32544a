package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// eventsApplier is a Projector that can apply records whose events are
// decoded already: a group decodes a batch's events once for all such
// members, where each member's Apply decoded them again.
type eventsApplier interface {
	applyEvents(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, events []domain.Event) error
}

// decodeEvents decodes the records' events.
//
// Errors: a malformed record, naming its position.
func decodeEvents(recs []eventstore.Record) ([]domain.Event, error) {
	events := make([]domain.Event, len(recs))
	for i := range recs {
		e, err := domain.UnmarshalEvent(recs[i].Type, recs[i].SchemaVersion, recs[i].Payload)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", recs[i].Position, err)
		}
		events[i] = e
	}
	return events, nil
}

// stager is an eventsApplier that can fold a batch before its transaction:
// a runner then folds the next batch while the last one's transaction runs
// (Runner.serve), the projector's Go work beside PostgreSQL's.
type stager interface {
	eventsApplier
	// stage folds recs over what the projector holds in memory for ledger,
	// which must continue right before them, and returns what is left to
	// write; nil when the batch needs the database first (it is then
	// applied in its transaction, by applyEvents).
	stage(ledger string, recs []eventstore.Record, events []domain.Event) (staged, error)
}

// staged is a batch folded before its transaction.
type staged interface {
	// write writes the batch in tx, once.
	write(ctx context.Context, tx pgx.Tx, ledger string) error
	// discard lets go of a batch not written or whose transaction failed,
	// and of what the projector holds past it.
	discard()
}

// decodeAndApply is the Apply of an eventsApplier: it decodes recs' events,
// then applies them.
func decodeAndApply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record, p eventsApplier) error {
	events, err := decodeEvents(recs)
	if err != nil {
		return err
	}
	return p.applyEvents(ctx, tx, ledger, recs, events)
}
