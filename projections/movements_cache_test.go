package projections_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// TestMovementsCacheSurvivesNothingItShouldNot applies the same log to two
// ledgers: in one transaction on a fresh projector, and batch by batch on one
// projector whose cache meets a rolled-back batch, a batch that skips ahead
// (another runner applied the positions between) and a batch applied again
// after its commit failed. The rows must be the same.
func TestMovementsCacheSurvivesNothingItShouldNot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	log := func(ledger string) []eventstore.Record {
		var recs []eventstore.Record
		add := func(e domain.Event) {
			recs = append(recs, eventstore.Record{Ledger: ledger, Position: uint64(len(recs) + 1), Type: e.EventType(),
				SchemaVersion: domain.SchemaVersion, RecordedAt: now.Add(time.Duration(len(recs)) * time.Second),
				Payload: domain.AppendEvent(nil, e)})
		}
		add(domain.AssetDefined{Code: "USD", Scale: 2})
		for i := range 5 {
			add(domain.AccountOpened{ID: fmt.Sprintf("a%d", i), Asset: "USD", Normal: domain.SideCredit})
		}
		for i := range 60 {
			add(domain.TransferCommitted{ID: fmt.Sprintf("t%d", i), EffectiveAt: now, Postings: []domain.Posting{{
				Debit: fmt.Sprintf("a%d", i%5), Credit: fmt.Sprintf("a%d", (i+2)%5), Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(int64(100 + i)), Scale: 2}}}})
			if i == 30 {
				add(domain.AccountOpened{ID: "late", Asset: "USD", Normal: domain.SideDebit})
				add(domain.TransferCommitted{ID: "to-late", EffectiveAt: now, Postings: []domain.Posting{{
					Debit: "late", Credit: "a1", Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(7), Scale: 2}}}})
			}
		}
		return recs
	}
	errRollback := errors.New("rolled back by the test")
	apply := func(p projections.Projector, recs []eventstore.Record, fail bool) {
		t.Helper()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := p.Apply(ctx, tx, recs[0].Ledger, recs); err != nil {
				return err
			}
			if fail {
				return errRollback
			}
			return nil
		})
		if fail && !errors.Is(err, errRollback) || !fail && err != nil {
			t.Fatalf("apply %d..%d (fail %v): %v", recs[0].Position, recs[len(recs)-1].Position, fail, err)
		}
	}

	whole := testenv.Name(t) + "-w"
	apply(projections.NewMovements(), log(whole), false)

	split := testenv.Name(t) + "-s"
	recs := log(split)
	p, other := projections.NewMovements(), projections.NewMovements()
	apply(p, recs[:10], false)
	apply(p, recs[10:20], true)  // rolled back: its totals must not stay
	apply(p, recs[10:15], false) // the same positions again, cut otherwise
	apply(other, recs[15:30], false)
	apply(p, recs[30:40], false) // p's cache stops at 15: it must reload
	apply(p, recs[40:50], true)
	apply(p, recs[40:], false)

	want := projectortest.Rows(t, pool, p, whole, nil)
	if got := projectortest.Rows(t, pool, p, split, nil); !cmp.Equal(got, want) {
		t.Fatalf("batch by batch differs from one batch (-one +batches):\n%s", cmp.Diff(want, got))
	}
}
