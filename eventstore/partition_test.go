package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestPartitionedEvents turns a log of 12 ledgers into a hash-partitioned
// events table: every ledger reads back the same chain, appends go on
// gapless from the head and a stale writer is still fenced, events stay
// append-only (in the parent and in a partition), the rows are spread over
// the partitions, the old table keeps its rows, and a second run is refused.
func TestPartitionedEvents(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	ledgers := make([]string, 12)
	heads := map[string]eventstore.Hash{}
	for i := range ledgers {
		ledgers[i] = testenv.Name(t)
		recs := records(ledgers[i], 0, eventstore.Hash{}, 5)
		testenv.NoError(t, s.Append(ctx, ledgers[i], 0, eventstore.Hash{}, recs))
		heads[ledgers[i]] = recs[4].Hash
	}
	if err := eventstore.PartitionEvents(ctx, pool, 1); !errors.Is(err, eventstore.ErrPartitions) {
		t.Fatalf("1 partition: %v, want ErrPartitions", err)
	}
	testenv.NoError(t, eventstore.PartitionEvents(ctx, pool, 4))
	if err := eventstore.PartitionEvents(ctx, pool, 4); !errors.Is(err, eventstore.ErrPartitions) {
		t.Fatalf("partitioned twice: %v, want ErrPartitions", err)
	}

	for _, ledger := range ledgers {
		recs := records(ledger, 5, heads[ledger], 3)
		testenv.NoError(t, s.Append(ctx, ledger, 5, heads[ledger], recs))
		all := readAll(t, s, ledger)
		if len(all) != 8 {
			t.Fatalf("%s: %d events after partitioning, want 8", ledger, len(all))
		}
		checkChain(t, all)
	}
	stale := records(ledgers[0], 5, heads[ledgers[0]], 1)
	if err := s.Append(ctx, ledgers[0], 5, heads[ledgers[0]], stale); !errors.Is(err, eventstore.ErrFenced) {
		t.Fatalf("a stale writer's append after partitioning: %v, want ErrFenced", err)
	}
	// A partition that holds rows: the refusal of an UPDATE is a row
	// trigger's, which an empty partition (the ledgers' names are random)
	// never fires.
	var held string
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM events LIMIT 1`).Scan(&held))
	for _, sql := range []string{`UPDATE events SET type = 'x'`, `DELETE FROM events`, `TRUNCATE events`,
		`UPDATE ` + held + ` SET type = 'x'`, `TRUNCATE events_p1`} {
		if _, err := pool.Exec(ctx, sql); err == nil {
			t.Errorf("%s: allowed on the partitioned events", sql)
		}
	}
	var partitions, used, old int
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass`).Scan(&partitions))
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT tableoid) FROM events`).Scan(&used))
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM events_unpartitioned`).Scan(&old))
	if partitions != 4 || used < 2 || old != 12*5 {
		t.Fatalf("%d partitions, %d holding rows, %d rows left in the old table; want 4, 2 or more, 60", partitions, used, old)
	}
}

// TestPartitionEventsRefusesATableInUse: with the events table held by
// another session (a ledgerd still running), PartitionEvents gives up after
// its lock timeout instead of queueing behind it, changing nothing.
func TestPartitionEventsRefusesATableInUse(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	tx, err := pool.Begin(t.Context())
	testenv.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(t.Context(), `SELECT count(*) FROM events`)
	testenv.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = eventstore.PartitionEvents(ctx, pool, 4)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" || ctx.Err() != nil { // lock_not_available
		t.Fatalf("partitioning a table in use: %v (ctx %v), want the lock refused", err, ctx.Err())
	}
	testenv.NoError(t, tx.Rollback(t.Context()))
	var partitioned bool
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p
		WHERE p.partrelid = 'events'::regclass)`).Scan(&partitioned))
	if partitioned {
		t.Fatal("the events table was partitioned after all")
	}
}
