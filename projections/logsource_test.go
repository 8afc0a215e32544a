package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/sourcetest"
)

// TestLogSourceContract runs the projections.Source contract on the
// PostgreSQL log, as it is and read one batch ahead (a rebuild's source).
func TestLogSourceContract(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*projections.LogSource) projections.Source{
		"as it is":   func(s *projections.LogSource) projections.Source { return s },
		"read ahead": func(s *projections.LogSource) projections.Source { return projections.NewAheadSource(s) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
				store := eventstore.New(xferPool(t))
				return sourcetest.Harness{
					Store: store,
					Open: func(_ *testing.T, ledger string) projections.Source {
						return open(projections.NewLogSource(store, ledger))
					},
				}
			})
		})
	}
}

// countingSource counts the calls to the source it wraps, and whether two
// were ever in flight at once.
type countingSource struct {
	src             projections.Source
	reads, inFlight atomic.Int64
	overlapped      atomic.Bool
}

func (c *countingSource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	c.reads.Add(1)
	if c.inFlight.Add(1) > 1 {
		c.overlapped.Store(true)
	}
	defer c.inFlight.Add(-1)
	return c.src.Next(ctx, from, max)
}

// TestAheadSourceReadsAhead: each batch after the first is the one read
// while the batch before was handed out (one read a batch); a batch other
// than the one read ahead (from elsewhere, or fewer records) is read again,
// after the read ahead ended; the source never has two calls in flight;
// Close leaves none; and a caller whose context ends while the read ahead
// waits at the head is not kept waiting.
func TestAheadSourceReadsAhead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(300, 5) // nothing is appended after it
	counted := &countingSource{src: projections.NewLogSource(e.store, e.ledger)}
	// Its read ahead ends with the test's context (not a deferred Close,
	// which a Next left waiting on it would race).
	ahead := projections.NewAheadSource(counted)
	direct := projections.NewLogSource(e.store, e.ledger)
	next := func(from uint64, max int) []eventstore.Record {
		t.Helper()
		got, err := ahead.Next(t.Context(), from, max)
		testenv.NoError(t, err)
		want, err := direct.Next(t.Context(), from, max)
		testenv.NoError(t, err)
		if len(got) != len(want) || got[0].Position != from || got[len(got)-1].Hash != want[len(want)-1].Hash {
			t.Fatalf("Next(%d, %d): %d records from %d, want %d from %d", from, max, len(got), got[0].Position, len(want), from)
		}
		return got
	}
	// reads is the source's calls once the read ahead, if any, ended:
	// Close waits for it, so the count no longer depends on its timing.
	reads := func() int64 {
		ahead.Close()
		if n := counted.inFlight.Load(); n != 0 {
			t.Fatalf("%d calls to the source in flight after Close", n)
		}
		return counted.reads.Load()
	}
	from := uint64(1)
	for range 5 {
		from += uint64(len(next(from, 20)))
	}
	// The first read then, four read ahead, and the sixth (ended by Close).
	if n := reads(); n != 6 {
		t.Errorf("%d reads for 5 batches in order, want 6 (one ahead)", n)
	}
	next(from, 20)    // read now, the next read ahead
	next(from+30, 20) // not the batch read ahead: read again
	next(from+50, 10) // fewer than read ahead: read again
	if n := reads(); n != 12 {
		t.Errorf("%d reads after three batches none of which was read ahead, want 12", n)
	}
	if counted.overlapped.Load() {
		t.Error("the source had two calls in flight at once")
	}

	// To the head, then a caller that waits 200 ms for what is not there.
	next(head-4, 10)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := ahead.Next(ctx, head+1, 10)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next past the head with a 200 ms context: %v, want %v", err, context.DeadlineExceeded)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next past the head still waiting 10 s after its context ended")
	}
}
