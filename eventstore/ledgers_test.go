package eventstore_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestLedgersMigrationKeepsExistingLedgersActive: a database migrated before
// 0004 has ledgers only as heads; after 0004 each is an active ledger that
// takes appends.
func TestLedgersMigrationKeepsExistingLedgersActive(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	before := fstest.MapFS{}
	for _, name := range []string{"0001_events.sql", "0002_snapshots.sql", "0003_app_role.sql"} {
		b, err := os.ReadFile("migrations/" + name)
		testenv.NoError(t, err)
		before["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	testenv.NoError(t, eventstore.ApplyMigrations(ctx, pool, "eventstore", before, "migrations"))
	recs := records("old", 0, eventstore.Hash{}, 3)
	last := recs[2]
	_, err = pool.Exec(ctx, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ('old', 3, $1)`, last.Hash[:])
	testenv.NoError(t, err)

	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	s := eventstore.New(pool)
	l, err := s.Ledger(ctx, "old")
	testenv.NoError(t, err)
	if l.Status != eventstore.StatusActive || l.Head != 3 {
		t.Errorf("ledger old after the migration: %+v, want active at head 3", l)
	}
	all, err := s.ListLedgers(ctx, "", eventstore.ListLedgersMax)
	testenv.NoError(t, err)
	if len(all) != 1 || all[0].Name != "old" || all[0].Status != eventstore.StatusActive {
		t.Errorf("ledgers %+v, want old, active", all)
	}
	// It takes the next append like any active ledger.
	testenv.NoError(t, s.Append(ctx, "old", 3, last.Hash, records("old", 3, last.Hash, 1)))
}

// TestCreateLedgerBound: CreateLedger refuses the ledger beyond liveMax
// active or importing ones, and an archived ledger frees its place.
func TestCreateLedgerBound(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const liveMax = 3
	for _, name := range []string{"a", "b"} {
		_, created, err := s.CreateLedger(ctx, name, liveMax)
		testenv.NoError(t, err)
		if !created {
			t.Fatalf("CreateLedger %s: not created", name)
		}
	}
	testenv.NoError(t, s.BeginImport(ctx, "c", liveMax)) // the third, importing
	if _, _, err := s.CreateLedger(ctx, "d", liveMax); !errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
		t.Fatalf("CreateLedger beyond %d: %v, want ErrTooManyLiveLedgers", liveMax, err)
	}
	if err := s.BeginImport(ctx, "d", liveMax); !errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
		t.Fatalf("BeginImport beyond %d: %v, want ErrTooManyLiveLedgers", liveMax, err)
	}
	// An existing ledger is answered as it is, bound or not.
	l, created, err := s.CreateLedger(ctx, "a", liveMax)
	testenv.NoError(t, err)
	if created || l.Name != "a" || l.Status != eventstore.StatusActive {
		t.Errorf("CreateLedger a again: %+v created %v", l, created)
	}
	_, changed, err := s.SetLedgerStatus(ctx, "a", eventstore.StatusActive, eventstore.StatusArchived)
	testenv.NoError(t, err)
	if !changed {
		t.Error("archive a: not changed")
	}
	if _, created, err := s.CreateLedger(ctx, "d", liveMax); err != nil || !created {
		t.Fatalf("CreateLedger d once a is archived: created %v, %v", created, err)
	}
}

// TestAppendChecksTheLedgerStatus: the writer's Append takes only an active
// ledger, AppendImport only an importing one, and the import's last chunk
// makes it active in its own transaction.
func TestAppendChecksTheLedgerStatus(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()

	// Importing: the writer is refused; the import appends, then ends it.
	recs := records("imp", 0, eventstore.Hash{}, 4)
	testenv.NoError(t, s.BeginImport(ctx, "imp", 0))
	testenv.NoError(t, s.AppendImport(ctx, "imp", 0, eventstore.Hash{}, recs[:2], false))
	if err := s.Append(ctx, "imp", 2, recs[1].Hash, recs[2:]); !errors.Is(err, eventstore.ErrLedgerImporting) {
		t.Fatalf("writer's append to an importing ledger: %v, want ErrLedgerImporting", err)
	}
	testenv.NoError(t, s.BeginImport(ctx, "imp", 0)) // resumed: still importing
	testenv.NoError(t, s.AppendImport(ctx, "imp", 2, recs[1].Hash, recs[2:], true))
	l, err := s.Ledger(ctx, "imp")
	testenv.NoError(t, err)
	if l.Status != eventstore.StatusActive || l.Head != 4 {
		t.Fatalf("after the last chunk: %+v, want active at 4", l)
	}
	more := records("imp", 4, recs[3].Hash, 1)
	if err := s.AppendImport(ctx, "imp", 4, recs[3].Hash, more, true); !errors.Is(err, eventstore.ErrLedgerNotImportable) {
		t.Fatalf("import append to an active ledger: %v, want ErrLedgerNotImportable", err)
	}
	if err := s.BeginImport(ctx, "imp", 0); !errors.Is(err, eventstore.ErrLedgerNotImportable) {
		t.Fatalf("BeginImport of an active ledger with events: %v, want ErrLedgerNotImportable", err)
	}
	testenv.NoError(t, s.Append(ctx, "imp", 4, recs[3].Hash, more))

	// Archived: nothing appends.
	_, _, err = s.SetLedgerStatus(ctx, "imp", eventstore.StatusActive, eventstore.StatusArchived)
	testenv.NoError(t, err)
	next := records("imp", 5, more[0].Hash, 1)
	if err := s.Append(ctx, "imp", 5, more[0].Hash, next); !errors.Is(err, eventstore.ErrLedgerArchived) {
		t.Fatalf("append to an archived ledger: %v, want ErrLedgerArchived", err)
	}
	if err := s.BeginImport(ctx, "imp", 0); !errors.Is(err, eventstore.ErrLedgerNotImportable) {
		t.Fatalf("BeginImport of an archived ledger: %v, want ErrLedgerNotImportable", err)
	}
	if _, _, err := s.SetLedgerStatus(ctx, "nope", eventstore.StatusActive, eventstore.StatusArchived); !errors.Is(err, domain.ErrUnknownLedger) {
		t.Fatalf("archive of an unknown ledger: %v, want domain.ErrUnknownLedger", err)
	}

	// A first append creates the ledger, active.
	testenv.NoError(t, s.Append(ctx, "fresh", 0, eventstore.Hash{}, records("fresh", 0, eventstore.Hash{}, 1)))
	if l, err := s.Ledger(ctx, "fresh"); err != nil || l.Status != eventstore.StatusActive {
		t.Fatalf("ledger made by its first append: %+v, %v", l, err)
	}
}
