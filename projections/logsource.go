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
// taking turns with them. It holds at most one batch ahead, and its source
// has at most one call in flight (a source need not take concurrent
// calls): a read ahead that is not the next one asked for (a runner
// restarted; a smaller max, as a lingering runner asks, which this source
// does not help), or that failed, is ended and waited for, then the batch
// is read again. Close ends the read ahead. Like the runner that calls it,
// it is not for concurrent use.
type AheadSource struct {
	src Source
	// ahead, when not nil, delivers the read of from, max started after
	// the last Next; cancel ends it.
	ahead  chan aheadRead
	from   uint64
	max    int
	cancel context.CancelFunc
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
	if len(recs) == 0 {
		// The contract says 1..max: the next batch's start is unknown.
		return nil, fmt.Errorf("read from %d: the source returned no records and no error", from)
	}
	// The read ahead runs under ctx: it ends when the caller's context
	// does, at the latest (a linger's short wait drops it early).
	readCtx, cancel := context.WithCancel(ctx)
	next := recs[len(recs)-1].Position + 1
	ahead := make(chan aheadRead, 1)
	s.ahead, s.from, s.max, s.cancel = ahead, next, max, cancel
	go func() {
		recs, err := s.src.Next(readCtx, next, max)
		ahead <- aheadRead{recs, err}
	}()
	return recs, nil
}

// take is the read ahead when it is from, max and succeeded, else a read
// made now.
func (s *AheadSource) take(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	if s.ahead != nil && s.from == from && s.max == max {
		ahead := s.ahead
		select {
		case r := <-ahead:
			s.ahead = nil
			s.cancel()
			if r.err == nil {
				return r.recs, nil
			}
		case <-ctx.Done():
			// A caller that waits no longer (a fault's quiet wait) while
			// the read ahead waits at the head.
			s.Close()
			return nil, ctx.Err()
		}
	}
	s.Close()
	return s.src.Next(ctx, from, max)
}

// Close ends the read ahead, if any, and waits for it: no call to the
// source is left running.
func (s *AheadSource) Close() {
	if s.ahead == nil {
		return
	}
	s.cancel()
	<-s.ahead
	s.ahead = nil
}
