package workflows_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/workflows"
)

// TestAnchoringAnEarlierHeadIsCovered: a head read before a later one was
// signed (the interval's listing, while a period close signed on) is
// covered, not a log that went back: ErrCovered, not the tamper alarm. A
// log that really went back under what was signed is ErrNotExtended.
func TestAnchoringAnEarlierHeadIsCovered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, store, ledger, recs := sealedLog(t, 3)
	testenv.NoError(t, store.Append(ctx, ledger, 0, eventstore.Hash{}, recs[:2]))
	a := workflows.NewAnchoring(store, anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))), nil,
		&anchorfile.Sink{Dir: t.TempDir()})
	if _, err := a.Anchor(ctx, ledger); err != nil {
		t.Fatalf("the head at 2: %v", err)
	}
	if _, err := a.SignAt(ctx, ledger, 1, recs[0].Hash); !errors.Is(err, workflows.ErrCovered) {
		t.Errorf("an earlier head, 1, after 2 was signed: %v, want ErrCovered", err)
	}
	testenv.NoError(t, a.AnchorMoved(ctx)) // the listing says 2: nothing to do
	testenv.NoError(t, store.Append(ctx, ledger, 2, recs[1].Hash, recs[2:]))
	if an, err := a.Anchor(ctx, ledger); err != nil || an.Position != 3 {
		t.Fatalf("the head at 3: %+v, %v", an, err)
	}
	// The log rewritten under 3 (its last event re-sealed otherwise): a
	// listing of 2 is no longer covered.
	_, err := pool.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER events_no_update_delete`)
	testenv.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE events SET hash = $3 WHERE ledger = $1 AND position = $2`, ledger, 3, make([]byte, 32))
	testenv.NoError(t, err)
	if _, err := a.SignAt(ctx, ledger, 2, recs[1].Hash); !errors.Is(err, workflows.ErrNotExtended) {
		t.Errorf("an earlier head under a rewritten log: %v, want ErrNotExtended", err)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

// sealedLog returns a store on a migrated database of its own, its pool, a
// ledger name of the test's, and n records of that ledger (assets C1..Cn)
// sealed in a chain from position 1, not appended.
func sealedLog(t *testing.T, n int) (*pgxpool.Pool, *eventstore.Store, string, []eventstore.Record) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	ledger := testenv.Name(t)
	var recs []eventstore.Record
	var prev eventstore.Hash
	for p := uint64(1); p <= uint64(n); p++ {
		r := eventstore.Record{Ledger: ledger, Position: p, Type: "AssetDefined", SchemaVersion: 1,
			RecordedAt: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), CommandID: fmt.Sprintf("C%d", p),
			Payload: []byte(fmt.Sprintf(`{"code":"C%d","scale":2}`, p))}
		r.Seal(prev)
		prev = r.Hash
		recs = append(recs, r)
	}
	return pool, eventstore.New(pool), ledger, recs
}
