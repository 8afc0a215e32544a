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

// AheadSource reads a source's next batch while its runner applies the one
// before: a rebuild's reads of the log (a PostgreSQL backend, and ledgerd
// decoding its rows) then overlap the apply's fold and COPY instead of
// taking turns with them. It holds at most one batch ahead; a read ahead
// that is not the next one asked for (a runner restarted, or a smaller
// max), or that failed, is dropped and the batch read again.
type AheadSource struct {
	src Source
	// ahead, when not nil, delivers the read of from, max started after
	// the last Next.
	ahead   chan aheadRead
	from    uint64
	max     int
	stopped context.CancelFunc
}

type aheadRead struct {
	recs []eventstore.Record
	err  error
}

// NewAheadSource returns src read one batch ahead.
func NewAheadSource(src Source) *AheadSource { return &AheadSource{src: src} }

// Next returns 1..max records from from on, waiting for one.
//
// Errors: src's; ctx's.
func (s *AheadSource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	recs, err := s.take(ctx, from, max)
	if err != nil {
		return nil, err
	}
	// Read the next batch under ctx: it ends, and the read with it, when
	// the runner's context does (or a linger's wait, whose read is then
	// dropped).
	readCtx, stop := context.WithCancel(ctx)
	next := recs[len(recs)-1].Position + 1
	ahead := make(chan aheadRead, 1)
	s.ahead, s.from, s.max, s.stopped = ahead, next, max, stop
	go func() {
		recs, err := s.src.Next(readCtx, next, max)
		ahead <- aheadRead{recs, err}
	}()
	return recs, nil
}

// take is the read ahead when it is from, max and succeeded, else a read
// made now.
func (s *AheadSource) take(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	ahead, matches := s.ahead, s.from == from && s.max == max
	if ahead != nil {
		s.ahead = nil
		if !matches {
			s.stopped()
		} else {
			select {
			case r := <-ahead:
				s.stopped()
				if r.err == nil {
					return r.recs, nil
				}
			case <-ctx.Done():
				s.stopped()
				return nil, ctx.Err()
			}
		}
	}
	return s.src.Next(ctx, from, max)
}
