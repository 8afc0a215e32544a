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

// BenchmarkBalancesApply applies batches of 8,192 single-posting transfers over
// 10,000 accounts: the projector's unit of work under load.
func BenchmarkBalancesApply(b *testing.B) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(b))
	testenv.NoError(b, err)
	defer pool.Close()
	testenv.NoError(b, eventstore.Migrate(ctx, pool)) // the read models' migrations read the log's tables
	testenv.NoError(b, projections.Migrate(ctx, pool))
	const accounts, batch = 10000, 8192
	ledger := "bench"
	var setup []eventstore.Record
	add := func(e domain.Event) {
		setup = append(setup, eventstore.Record{Ledger: ledger, Position: uint64(len(setup) + 1), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, Payload: domain.AppendEvent(nil, e)})
	}
	add(domain.AssetDefined{Code: "USD", Scale: 2})
	for i := 0; i < accounts; i++ {
		add(domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
	}
	proj := projections.Balances{}
	testenv.NoError(b, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return proj.Apply(ctx, tx, ledger, setup) }))
	recs := make([]eventstore.Record, batch)
	for i := range recs {
		e := domain.TransferCommitted{ID: fmt.Sprintf("t-%d", i), EffectiveAt: time.Now().UTC(), Postings: []domain.Posting{{
			Debit: fmt.Sprintf("acc-%d", (i*7)%accounts), Credit: fmt.Sprintf("acc-%d", (i*13+1)%accounts), Asset: "USD",
			Amount: domain.Amount{Units: domain.UnitsFromInt64(int64(1 + i%10000)), Scale: 2}}}}
		recs[i] = eventstore.Record{Ledger: ledger, Type: e.EventType(), SchemaVersion: domain.SchemaVersion, Payload: domain.AppendEvent(nil, e)}
	}
	next := uint64(len(setup)) + 1
	b.ResetTimer()
	for b.Loop() {
		// Each batch follows the last, as the runner feeds them.
		for i := range recs {
			recs[i].Position = next + uint64(i)
		}
		next += uint64(len(recs))
		testenv.NoError(b, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return proj.Apply(ctx, tx, ledger, recs) }))
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "events/s")
}
