package projections_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// TestAccountsMigrationBackfills: migration 0015 fills the accounts table of
// a read model projected before it from the log, row for row as the
// projector writes it, and moves the balances checkpoint to version 3; the
// later migrations (0021, which writes the table again at the movements
// checkpoint, here the same) keep the rows.
func TestAccountsMigrationBackfills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.runWorkload(100, 3)
	head := e.amendAccounts()
	for _, proj := range []projections.Projector{projections.Balances{}, projections.NewMovements()} {
		r := e.startRunner(t.Context(), proj, e.natsSource())
		waitFor(t, r, head)
		r.stop()
	}
	accounts := func() []string {
		return projectortest.Rows(t, e.pool, projections.NewMovements(), e.ledger, batchDependent)["accounts"]
	}
	want := accounts()
	if len(want) == 0 {
		t.Fatal("no accounts projected")
	}

	t.Log("back to the read model as projected before migration 0015 (so before 0021 too)")
	e.backBeforeBalancesFromLines()
	for _, sql := range []string{
		`DROP TABLE accounts`,
		`UPDATE projection_checkpoints SET version = 2 WHERE projection = 'balances'`,
		`DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0015_accounts.sql'`,
	} {
		_, err := e.pool.Exec(t.Context(), sql)
		testenv.NoError(t, err)
	}
	testenv.NoError(t, projections.MigrateThrough(t.Context(), e.pool, 15))
	// 0015 knows no freezes (0025 adds them): the accounts amendAccounts
	// froze or unfroze are compared after every migration only, the others
	// here too, with the column added for the comparison.
	_, err := e.pool.Exec(t.Context(), `ALTER TABLE accounts ADD COLUMN frozen_position bigint`)
	testenv.NoError(t, err)
	thawed := regexp.MustCompile(`"account": "(meta:1|meta:2|USD-1|USD-2)"`)
	unfrozen := func(rows []string) []string {
		return slices.DeleteFunc(slices.Clone(rows), thawed.MatchString)
	}
	if len(unfrozen(want)) != len(want)-4 {
		t.Fatalf("%d accounts frozen or unfrozen, want 4", len(want)-len(unfrozen(want)))
	}
	if diff := cmp.Diff(unfrozen(want), unfrozen(accounts())); diff != "" {
		t.Errorf("accounts backfilled by 0015 (-projected +backfilled):\n%s", diff)
	}
	_, err = e.pool.Exec(t.Context(), `ALTER TABLE accounts DROP COLUMN frozen_position`)
	testenv.NoError(t, err)
	if v := e.versionOf(projections.Balances{}, e.ledger); v != 3 {
		t.Errorf("balances checkpoint version %d after migration 0015, want 3", v)
	}

	testenv.NoError(t, projections.Migrate(t.Context(), e.pool))
	if diff := cmp.Diff(want, accounts()); diff != "" {
		t.Errorf("accounts after every migration (-projected +migrated):\n%s", diff)
	}
	if b, m := e.versionOf(projections.Balances{}, e.ledger), e.versionOf(projections.NewMovements(), e.ledger); b != (projections.Balances{}).Version() ||
		m != projections.NewMovements().Version() {
		t.Errorf("checkpoint versions balances %d, movements %d after every migration, want %d and %d",
			b, m, (projections.Balances{}).Version(), projections.NewMovements().Version())
	}
}
