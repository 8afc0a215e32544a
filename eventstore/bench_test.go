package eventstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// BenchmarkAppend measures one append of a batch of 1 and of 1,000 events,
// on a pooled connection (Store.Append) and on a lease's own session
// (Held.Append, the writer's path). For a small batch the round trips to
// PostgreSQL and the commit's fsync are nearly all of the cost. It appends
// as a login in ledger_writer, as ledgerd does, so the checks of its
// appends (advance_head, the events' trigger) are in the figures.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	ownerURL := testenv.PostgresURL(b)
	owner, err := pgxpool.New(ctx, ownerURL)
	testenv.NoError(b, err)
	testenv.NoError(b, eventstore.Migrate(ctx, owner))
	owner.Close()
	url := testenv.LoginURL(b, ownerURL, "ledger_writer")
	// commit=sync is what ledgerd does (an fsync per commit, most of a small
	// batch's time on a shared disk); commit=async leaves the fsync out, so
	// that the round trips show.
	for _, commit := range []string{"sync", "async"} {
		cfg, err := pgxpool.ParseConfig(url)
		testenv.NoError(b, err)
		if commit == "async" {
			cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
		}
		// One connection: the store path's appends all run on one backend,
		// whose CPU the benchmark reports (pg-µs/event).
		cfg.MaxConns = 1
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		testenv.NoError(b, err)
		b.Cleanup(pool.Close)
		benchmarkAppend(b, commit, pool)
	}
}

func benchmarkAppend(b *testing.B, commit string, pool *pgxpool.Pool) {
	ctx := context.Background()
	s := eventstore.New(pool)
	lease := eventstore.NewLease(pool.Config().ConnConfig)
	b.Cleanup(lease.Close)
	for _, path := range []string{"store", "lease"} {
		for _, n := range []int{1, 1000} {
			ledger := fmt.Sprintf("bench-%s-%s-%d", commit, path, n)
			appendFn := func(expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
				return s.Append(ctx, ledger, expected, prev, recs)
			}
			if path == "lease" {
				held, ok, err := lease.TryAcquire(ctx, ledger)
				testenv.NoError(b, err)
				if !ok {
					b.Fatalf("lease of %s is held", ledger)
				}
				b.Cleanup(held.Release)
				appendFn = func(expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
					return held.Append(ctx, expected, prev, recs)
				}
			}
			// The head goes on from one run of the sub-benchmark to the next.
			var (
				head uint64
				prev eventstore.Hash
			)
			b.Run(fmt.Sprintf("commit=%s/%s/events=%d", commit, path, n), func(b *testing.B) {
				// The lease's session is not the pool's: only the store
				// path's backend is measured.
				var meter *testenv.CPUMeter
				if path == "store" {
					meter = testenv.StartCPU(b, ctx, pool)
				}
				for range b.N {
					b.StopTimer()
					meter.Pause()
					recs := records(ledger, head, prev, n)
					meter.Resume()
					b.StartTimer()
					testenv.NoError(b, appendFn(head, prev, recs))
					head, prev = recs[n-1].Position, recs[n-1].Hash
				}
				meter.Report(b, n*b.N, "event")
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkRead reads a page of 10,000 events (eventstore.ReadMax): Read
// starts with room for a few records and grows it four times at a time.
func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(b))
	testenv.NoError(b, err)
	b.Cleanup(pool.Close)
	s := eventstore.New(pool)
	const ledger, n = "bench-read", eventstore.ReadMax
	var (
		head uint64
		prev eventstore.Hash
	)
	for head < n {
		recs := records(ledger, head, prev, 1000)
		testenv.NoError(b, s.Append(ctx, ledger, head, prev, recs))
		head, prev = recs[len(recs)-1].Position, recs[len(recs)-1].Hash
	}
	b.ReportAllocs()
	for b.Loop() {
		recs, err := s.Read(ctx, ledger, 1, n)
		testenv.NoError(b, err)
		if len(recs) != n {
			b.Fatalf("%d records, want %d", len(recs), n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
