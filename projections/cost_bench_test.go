package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// BenchmarkProjectorCost applies single-posting transfers over 10,000
// accounts through each projector ledgerd runs, in batches as its runner
// forms them (8,192 under batched load; 64, a writer's commit under
// single-transfer load), each in a transaction like the runner's (commit
// without a WAL flush wait, the checkpoint moved). Beside the rate it
// reports the CPU each event costs this process and the PostgreSQL backend:
// the projections' rows of the cost model in docs/perf.md.
//
//	go test -run '^$' -bench ProjectorCost -benchtime 20x ./projections
func BenchmarkProjectorCost(b *testing.B) {
	for _, batch := range []int{projections.BatchMaxDefault, 64} {
		for _, proj := range projections.All() {
			b.Run(fmt.Sprintf("%s/batch=%d", proj.Name(), batch), func(b *testing.B) {
				benchmarkProjectorCost(b, proj, batch)
			})
		}
	}
}

func benchmarkProjectorCost(b *testing.B, proj projections.Projector, batch int) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(b))
	testenv.NoError(b, err)
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	testenv.NoError(b, err)
	defer conn.Release()
	const accounts = 10000
	ledger := "bench"
	now := time.Now().UTC().Truncate(time.Microsecond)
	var setup []eventstore.Record
	add := func(e domain.Event) {
		setup = append(setup, eventstore.Record{Ledger: ledger, Position: uint64(len(setup) + 1), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: now, Payload: domain.AppendEvent(nil, e)})
	}
	add(domain.AssetDefined{Code: "USD", Scale: 2})
	for i := range accounts {
		add(domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
	}
	apply := func(recs []eventstore.Record) {
		testenv.NoError(b, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
				VALUES ($1, $2, $3, $4) ON CONFLICT (ledger, projection) DO UPDATE SET position = excluded.position, updated_at = now()`,
				ledger, proj.Name(), proj.Version(), int64(recs[len(recs)-1].Position)); err != nil {
				return err
			}
			return proj.Apply(ctx, tx, ledger, recs)
		}))
	}
	apply(setup)
	recs := make([]eventstore.Record, batch)
	next := uint64(len(setup))
	seq := 0
	fill := func() {
		for i := range recs {
			next++
			seq++
			e := domain.TransferCommitted{ID: fmt.Sprintf("t-%d", seq), EffectiveAt: now, Postings: []domain.Posting{{
				Debit: fmt.Sprintf("acc-%d", (seq*7)%accounts), Credit: fmt.Sprintf("acc-%d", (seq*13+1)%accounts), Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(int64(1 + seq%10000)), Scale: 2}}}}
			recs[i] = eventstore.Record{Ledger: ledger, Position: next, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
				RecordedAt: now, Payload: domain.AppendEvent(nil, e)}
		}
	}
	meter := testenv.StartCPU(b, ctx, conn.Conn())
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		meter.Pause()
		fill()
		meter.Resume()
		b.StartTimer()
		apply(recs)
	}
	meter.Report(b, batch*b.N, "event")
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "events/s")
}
