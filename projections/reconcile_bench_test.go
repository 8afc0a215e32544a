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

// BenchmarkReconcileMatch applies, through the reconciliation projector in
// batches of 8,192 as its runner does, 100,000 movements of a bank account
// and then its statement of 100,000 lines: 80% match by reference, 15% by
// amount and date (shifted a day), 5% are fees with no movement. It reports
// the time to match the whole statement.
func BenchmarkReconcileMatch(b *testing.B) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(b))
	testenv.NoError(b, err)
	defer pool.Close()
	testenv.NoError(b, eventstore.Migrate(ctx, pool))
	testenv.NoError(b, projections.Migrate(ctx, pool))
	const n, batch = 100_000, projections.BatchMaxDefault
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	round := 0
	for b.Loop() {
		round++
		ledger := fmt.Sprintf("recon-bench-%d", round)
		var recs []eventstore.Record
		add := func(e domain.Event) {
			recs = append(recs, eventstore.Record{Ledger: ledger, Position: uint64(len(recs) + 1), Type: e.EventType(),
				SchemaVersion: domain.SchemaVersion, Payload: domain.AppendEvent(nil, e)})
		}
		add(domain.AssetDefined{Code: "USD", Scale: 2})
		add(domain.AccountOpened{ID: "bank", Asset: "USD", Normal: domain.SideDebit})
		add(domain.AccountOpened{ID: "customers", Asset: "USD", Normal: domain.SideCredit})
		setup := len(recs)
		add(domain.MatchingRulesSet{Account: "bank", Rules: domain.DefaultMatchingRules})
		usd := func(c int64) domain.Amount { return domain.Amount{Units: domain.UnitsFromInt64(c), Scale: 2} }
		for i := range n {
			ref := fmt.Sprintf("INV-%d", i)
			if i%20 >= 16 {
				ref = "" // matched by amount and date
			}
			add(domain.TransferCommitted{ID: fmt.Sprintf("t-%d", i), Reference: ref, EffectiveAt: base.Add(time.Duration(i%30) * 24 * time.Hour),
				Postings: []domain.Posting{{Debit: "bank", Credit: "customers", Asset: "USD", Amount: usd(int64(100_000 + i))}}})
		}
		movements := len(recs)
		for i := range n {
			e := domain.StatementImported{Account: "bank", Source: "acme", ExternalID: fmt.Sprintf("l-%d", i),
				Amount: usd(int64(100_000 + i)), Direction: domain.SideCredit,
				ValueDate: base.Add(time.Duration(i%30) * 24 * time.Hour).Format(domain.DateLayout), Reference: fmt.Sprintf("INV-%d", i)}
			switch {
			case i%20 >= 19: // a fee: no movement
				e.Amount, e.Direction, e.Reference = usd(int64(1+i%5000)), domain.SideDebit, fmt.Sprintf("FEE-%d", i)
			case i%20 >= 16:
				e.Reference = fmt.Sprintf("BANK-%d", i)
				e.ValueDate = base.Add(time.Duration(i%30+1) * 24 * time.Hour).Format(domain.DateLayout)
			}
			add(e)
		}
		mv, rc := projections.NewMovements(), projections.NewReconciliation()
		testenv.NoError(b, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := mv.Apply(ctx, tx, ledger, recs[:setup]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, $2, $3, $4)`,
				ledger, mv.Name(), mv.Version(), setup)
			return err
		}))
		apply := func(from, to int) time.Duration {
			began := time.Now()
			for i := from; i < to; i += batch {
				chunk := recs[i:min(i+batch, to)]
				testenv.NoError(b, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return rc.Apply(ctx, tx, ledger, chunk) }))
			}
			return time.Since(began)
		}
		apply(0, movements)
		took := apply(movements, len(recs))
		var matched, unmatched int
		testenv.NoError(b, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE match_id IS NOT NULL), count(*) FILTER (WHERE match_id IS NULL)
			FROM recon_lines WHERE ledger = $1`, ledger).Scan(&matched, &unmatched))
		if want := n - n/20; matched != want || unmatched != n/20 {
			b.Fatalf("%d lines matched and %d not, want %d and %d", matched, unmatched, want, n/20)
		}
		b.ReportMetric(took.Seconds(), "s/100k-lines")
		b.ReportMetric(float64(n)/took.Seconds(), "lines/s")
	}
}
