package eventstore_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// exchanges counts what a connection asks PostgreSQL through pgx: each
// query, batch, COPY and prepare is at least one round trip.
type exchanges struct{ queries, batches, copies, prepares atomic.Int64 }

func (e *exchanges) reset() {
	e.queries.Store(0)
	e.batches.Store(0)
	e.copies.Store(0)
	e.prepares.Store(0)
}

func (e *exchanges) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	e.queries.Add(1)
	return ctx
}

func (e *exchanges) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (e *exchanges) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	e.batches.Add(1)
	return ctx
}

func (e *exchanges) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (e *exchanges) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (e *exchanges) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	e.copies.Add(1)
	return ctx
}

func (e *exchanges) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

func (e *exchanges) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	e.prepares.Add(1)
	return ctx
}

func (e *exchanges) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TestAppendRoundTrips: an append, on a pooled connection or on a lease's
// session, asks PostgreSQL two things once its statements are prepared:
// one pipelined batch (BEGIN, the limits, the ledger's status, the events
// with the head's move, the notice) and the COMMIT. Before append_events,
// the events' COPY took two more round trips.
func TestAppendRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(t))
	testenv.NoError(t, err)
	ex := &exchanges{}
	cfg.ConnConfig.Tracer = ex
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	s := eventstore.New(pool)
	lease := eventstore.NewLease(cfg.ConnConfig)
	t.Cleanup(lease.Close)
	held, ok := tryAcquire(t, lease, "leased")
	if !ok {
		t.Fatal("the lease of a new ledger is held")
	}
	for _, tc := range []struct {
		name, ledger string
		append       func(ledger string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error
	}{
		{"Store.Append", "pooled", func(ledger string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
			return s.Append(ctx, ledger, expected, prev, recs)
		}},
		{"Held.Append", "leased", func(_ string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
			return held.Append(ctx, expected, prev, recs)
		}},
	} {
		var (
			head uint64
			prev eventstore.Hash
		)
		// The first append prepares the statements; the second is counted.
		for range 2 {
			recs := records(tc.ledger, head, prev, 3)
			ex.reset()
			testenv.NoError(t, tc.append(tc.ledger, head, prev, recs))
			head, prev = recs[len(recs)-1].Position, recs[len(recs)-1].Hash
		}
		q, b, c, p := ex.queries.Load(), ex.batches.Load(), ex.copies.Load(), ex.prepares.Load()
		if q != 1 || b != 1 || c != 0 || p != 0 {
			t.Errorf("%s: %d queries, %d batches, %d COPYs, %d prepares; want 1 (COMMIT), 1, 0, 0", tc.name, q, b, c, p)
		}
	}
}
