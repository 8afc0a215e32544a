package projections_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// TestAccountsMigrationBackfills: migration 0015 fills the accounts table of
// a read model projected before it from the log, row for row as the
// projector writes it, and moves the checkpoint to version 3.
func TestAccountsMigrationBackfills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.runWorkload(100, 3)
	head := e.amendAccounts()
	r := e.startRunner(t.Context(), projections.Balances{}, e.natsSource())
	waitFor(t, r, head)
	r.stop()
	want := projectortest.Rows(t, e.pool, projections.Balances{}, e.ledger, batchDependent)["accounts"]
	if len(want) == 0 {
		t.Fatal("no accounts projected")
	}

	t.Log("back to the read model as projected before migration 0015")
	for _, sql := range []string{
		`DROP TABLE accounts`,
		`UPDATE projection_checkpoints SET version = 2`,
		`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0015_accounts.sql'`,
	} {
		_, err := e.pool.Exec(t.Context(), sql)
		testenv.NoError(t, err)
	}
	testenv.NoError(t, projections.Migrate(t.Context(), e.pool))
	got := projectortest.Rows(t, e.pool, projections.Balances{}, e.ledger, batchDependent)["accounts"]
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backfilled accounts (-projected +backfilled):\n%s", diff)
	}
	var version int
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT version FROM projection_checkpoints
		WHERE ledger = $1 AND projection = 'balances'`, e.ledger).Scan(&version))
	if version != (projections.Balances{}).Version() {
		t.Errorf("checkpoint version %d after the migration, want %d", version, (projections.Balances{}).Version())
	}
}
