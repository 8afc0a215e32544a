package projections_test

import (
	"context"
	"sync/atomic"
	"testing"

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

// countingSource counts the reads of the source it wraps.
type countingSource struct {
	src   projections.Source
	reads atomic.Int64
}

func (c *countingSource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	c.reads.Add(1)
	return c.src.Next(ctx, from, max)
}

// TestAheadSourceReadsAhead: each batch after the first is the one read
// while the batch before was handed out (one read a batch), and a batch
// other than the one read ahead (from elsewhere, or fewer records) is read
// again, right.
func TestAheadSourceReadsAhead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.runWorkload(300, 5)
	counted := &countingSource{src: projections.NewLogSource(e.store, e.ledger)}
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
	from := uint64(1)
	for range 5 {
		from += uint64(len(next(from, 50)))
	}
	// Five batches: the first read then, each other read ahead, and the
	// sixth being read ahead now.
	if n := counted.reads.Load(); n != 6 {
		t.Errorf("%d reads for 5 batches in order, want 6 (one ahead)", n)
	}
	next(from+7, 50)    // not the batch read ahead: read again
	next(from+7+50, 10) // fewer than read ahead: read again
	if n := counted.reads.Load(); n != 10 {
		t.Errorf("%d reads after two batches other than read ahead, want 10", n)
	}
}
