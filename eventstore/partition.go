package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds of PartitionEvents.
const (
	// PartitionsMin and PartitionsMax bound the partitions of the events
	// table: fewer than two is no partitioning, more than 256 costs every
	// statement that cannot prune (an audit's scan) more than it saves.
	PartitionsMin = 2
	PartitionsMax = 256
)

// ErrPartitions means a partition count out of bounds, or an events table
// partitioned already.
var ErrPartitions = errors.New("events partitions")

// partitionLockTimeout bounds PartitionEvents' wait for the events table.
const partitionLockTimeout = 5 * time.Second

// PartitionEvents turns the events table into one partitioned by the hash of
// the ledger's name into partitions tables (events_p0, events_p1, ...), in
// one transaction that holds the table exclusively: stop every ledgerd
// first. Each ledger's events then live in one partition, every statement
// that names a ledger (appends, reads, a ledger's audit) reads that one
// alone, and a sharded PostgreSQL (Citus, distribution column ledger) is
// the same layout across machines (docs/operations.md, "Scaling out").
//
// The rows are copied; the old table stays as events_unpartitioned, its
// rows untouched (append-only, as before), for the operator to compare and
// drop. The new table keeps the old one's columns, checks, primary key,
// append-only triggers and grants.
//
// Errors: ErrPartitions (a count out of bounds, or done already); the
// database error.
func PartitionEvents(ctx context.Context, pool *pgxpool.Pool, partitions int) error {
	if partitions < PartitionsMin || partitions > PartitionsMax {
		return fmt.Errorf("%d partitions: want %d to %d: %w", partitions, PartitionsMin, PartitionsMax, ErrPartitions)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// A ledgerd still running holds the table: refuse within the bound
		// rather than queue the lock, which would stop every read of events
		// behind it until interrupted.
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, millis(partitionLockTimeout)); err != nil {
			return fmt.Errorf("lock events: %w", err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE events IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock events (stop every ledgerd first): %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', '0', true)`); err != nil {
			return fmt.Errorf("lock events: %w", err)
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
			WHERE c.oid = 'events'::regclass)`).Scan(&done); err != nil {
			return fmt.Errorf("events partitioned already?: %w", err)
		}
		if done {
			return fmt.Errorf("the events table is partitioned already: %w", ErrPartitions)
		}
		stmts := []string{
			`CREATE TABLE events_partitioned (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)
				PARTITION BY HASH (ledger)`,
		}
		for i := range partitions {
			// Row triggers are cloned onto the partitions; a statement's
			// TRUNCATE of one partition is refused by its own trigger.
			stmts = append(stmts, fmt.Sprintf(`CREATE TABLE events_p%d PARTITION OF events_partitioned
				FOR VALUES WITH (MODULUS %d, REMAINDER %d)`, i, partitions, i),
				fmt.Sprintf(`CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events_p%d
				FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()`, i))
		}
		stmts = append(stmts,
			`INSERT INTO events_partitioned SELECT * FROM events`,
			`ALTER TABLE events RENAME TO events_unpartitioned`,
			`ALTER TABLE events_partitioned RENAME TO events`,
			// The old table's grants, privilege by privilege, on the new one.
			`DO $$
			DECLARE g record;
			BEGIN
				FOR g IN SELECT a.privilege_type, r.rolname FROM pg_class c, aclexplode(c.relacl) a
					JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = 'events_unpartitioned'::regclass
				LOOP
					EXECUTE format('GRANT %s ON events TO %I', g.privilege_type, g.rolname);
				END LOOP;
			END $$`,
			`CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
				FOR EACH ROW EXECUTE FUNCTION events_append_only()`,
			`CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
				FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()`,
		)
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("partition events: %w", err)
			}
		}
		return nil
	})
}
