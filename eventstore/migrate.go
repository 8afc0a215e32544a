package eventstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the event store's schema migrations that are not applied yet.
// See ApplyMigrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return ApplyMigrations(ctx, pool, "eventstore", migrations, "migrations")
}

// Pending returns the event store's migrations not applied yet. See
// PendingMigrations.
func Pending(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return PendingMigrations(ctx, pool, "eventstore", migrations, "migrations")
}

// PendingMigrations returns, in name order, the .sql files of dir in fsys
// that component has not applied: every one when schema_migrations does not
// exist yet. It only reads (SELECT on schema_migrations), so a ledgerd that
// does not own the schema can tell whether it is up to date.
//
// Errors: a database error, wrapped.
func PendingMigrations(ctx context.Context, pool *pgxpool.Pool, component string, fsys fs.FS, dir string) ([]string, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", component, err)
	}
	if !exists {
		return names, nil
	}
	rows, err := pool.Query(ctx, `SELECT name FROM schema_migrations WHERE component = $1`, component)
	if err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", component, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", component, err)
	}
	done := make(map[string]bool, len(applied))
	for _, n := range applied {
		done[n] = true
	}
	var pending []string
	for _, n := range names {
		if !done[n] {
			pending = append(pending, n)
		}
	}
	return pending, nil
}

// migrateLockKey serialises migrators across processes (an advisory lock key).
const migrateLockKey = 0x6c6564676572 // "ledger"

// ApplyMigrations applies, in name order, the .sql files of dir in fsys that the
// component has not applied yet, each in its own transaction, recording them in
// schema_migrations. Concurrent callers (two ledgerd starting) take turns.
//
// Errors: the database error of the first migration that fails, naming it.
func ApplyMigrations(ctx context.Context, pool *pgxpool.Pool, component string, fsys fs.FS, dir string) error {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLockKey)); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", component, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrateLockKey)) //nolint:errcheck // released with the session anyway
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component text NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (component, name))`); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for _, name := range names {
		if err := applyOne(ctx, conn.Conn(), component, fsys, name); err != nil {
			return err
		}
	}
	return nil
}

func applyOne(ctx context.Context, conn *pgx.Conn, component string, fsys fs.FS, name string) error {
	var done bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE component = $1 AND name = $2)`,
		component, name).Scan(&done); err != nil {
		return fmt.Errorf("migrate %s %s: %w", component, name, err)
	}
	if done {
		return nil
	}
	sql, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("migrate %s %s: %w", component, name, err)
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("migrate %s %s: %w", component, name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (component, name) VALUES ($1, $2)`, component, name); err != nil {
			return fmt.Errorf("migrate %s %s: %w", component, name, err)
		}
		return nil
	})
}
