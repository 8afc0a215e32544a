package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/ledgerd/ledger/eventstore"
)

// logPollInterval is how often a LogSource at the head looks for more records.
const logPollInterval = 20 * time.Millisecond

// LogSource reads one ledger's records from the Postgres log in pages of at
// most eventstore.ReadMax: a rebuild's bulk read. At the head it polls.
type LogSource struct {
	store  *eventstore.Store
	ledger string
}

// NewLogSource returns a Source over ledger's log, whatever ledger its runner
// writes under (a rebuild's runner writes under a shadow key).
func NewLogSource(store *eventstore.Store, ledger string) *LogSource {
	return &LogSource{store: store, ledger: ledger}
}

// Next returns 1..max records from from on, waiting for one.
//
// Errors: the store's error; ctx's error.
func (s *LogSource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	limit := min(max, eventstore.ReadMax)
	for {
		recs, err := s.store.Read(ctx, s.ledger, from, limit)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			if recs[0].Position != from {
				return nil, fmt.Errorf("log of %s from %d: starts at %d", s.ledger, from, recs[0].Position)
			}
			return recs, nil
		}
		select {
		case <-time.After(logPollInterval):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
