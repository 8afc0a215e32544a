package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// ErrSchemaBehind means the database lacks migrations this ledgerd needs and
// the role it connects as does not own the schema, so it may not apply them:
// `ledgerd migrate` as the owner does.
var ErrSchemaBehind = errors.New("database schema is behind this ledgerd")

const (
	// appRole is the role the migrations grant ledgerd's privileges to
	// (eventstore's 0003_app_role.sql).
	appRole = "ledger_app"
	// devLoginRole is the role ledgerd serves as on its private cluster: a
	// member of appRole, so dev mode runs with the privileges of production
	// and the superuser only migrates. It has no password: the cluster
	// trusts its private socket only.
	devLoginRole = "ledgerd_app"
	// migrateConnsMax bounds the pool that migrates: migrations run one at
	// a time on one connection.
	migrateConnsMax = 2
	// devStopTimeout bounds the stop of the private cluster after `ledgerd
	// migrate`, as Close bounds it after serving.
	devStopTimeout = 30 * time.Second
)

// schemaPart is one component's migrations.
type schemaPart struct {
	name    string
	migrate func(context.Context, *pgxpool.Pool) error
	pending func(context.Context, *pgxpool.Pool) ([]string, error)
}

// schemaParts are the components whose tables ledgerd uses, in the order
// they migrate: api_keys and the read models refer to the event store's
// ledger_app role.
func schemaParts() []schemaPart {
	return []schemaPart{
		{"eventstore", eventstore.Migrate, eventstore.Pending},
		{"apikeys", apikeys.Migrate, apikeys.Pending},
		{"projections", projections.Migrate, projections.Pending},
		{"webhooks", webhooks.Migrate, webhooks.Pending},
	}
}

func (m *Main) openPostgres(ctx context.Context) error {
	url := m.Config.PostgresURL
	if url == "" {
		c, err := m.startDevPostgres(ctx)
		if err != nil {
			return err
		}
		m.pg = c
		if _, err := migrateDev(ctx, c, m.Logger); err != nil {
			return err
		}
		url = c.URLAs(devLoginRole, devpg.Database)
	}
	connsMax := max(m.Config.PostgresConnsMax, 4)
	var err error
	if m.pool, err = openPool(ctx, url, connsMax); err != nil {
		return err
	}
	if err := prepareSchema(ctx, m.pool, m.Logger); err != nil {
		return err
	}
	if err := m.openRolePools(ctx, connsMax); err != nil {
		return err
	}
	return m.openReplica(ctx, connsMax)
}

// openRolePools opens a pool for each database role given its own URL
// (-postgres-projector-url, -postgres-read-url, -postgres-keys-url); a role
// without one uses the main pool's login, which must then hold that role
// too (ledger_app holds them all). Each login is checked for what its
// pool is used for, so that a login in the wrong role fails the start
// naming the flag, not a later call.
//
// Errors: ErrRoleMissing, or a connection error.
func (m *Main) openRolePools(ctx context.Context, connsMax int) error {
	pools := []struct {
		url, flag string
		into      **pgxpool.Pool
		need      rolePrivilege
	}{
		{"", "-postgres-url", &m.pool, needWriter},
		{m.Config.PostgresProjectorURL, "-postgres-projector-url", &m.projPool, needProjector},
		{m.Config.PostgresReadURL, "-postgres-read-url", &m.readPool, needReader},
		{m.Config.PostgresKeysURL, "-postgres-keys-url", &m.keysPool, needKeys},
	}
	for _, p := range pools {
		if p.url != "" {
			pool, err := openPool(ctx, p.url, connsMax)
			if err != nil {
				return fmt.Errorf("%s: %w", p.flag, err)
			}
			*p.into = pool
		} else if *p.into == nil {
			*p.into = m.pool
		}
		if p.need == needKeys && m.Config.AuthDisabled && m.Config.AdminKey == "" {
			continue // no key is read or written at start; CreateApiKey fails if the role lacks it
		}
		if err := checkRole(ctx, *p.into, p.flag, p.need); err != nil {
			return err
		}
	}
	return nil
}

// closePools closes the main pool and each role's own.
func (m *Main) closePools() {
	for _, p := range []*pgxpool.Pool{m.projPool, m.readPool, m.keysPool, m.replicaPool} {
		if p != nil && p != m.pool {
			p.Close()
		}
	}
	if m.pool != nil {
		m.pool.Close()
	}
}

// openPool connects to url with at most connsMax connections.
func openPool(ctx context.Context, url string, connsMax int) (*pgxpool.Pool, error) {
	pool, err := newPool(ctx, url, connsMax)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}

// newPool is a pool of at most connsMax connections to url, none made yet.
func newPool(ctx context.Context, url string, connsMax int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	cfg.MaxConns = int32(connsMax)
	cfg.ConnConfig.BuildFrontend = bufferedFrontend
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}

// pgReadBufferBytes is what a connection reads from PostgreSQL at once, at
// most: pgx reads 8 KiB at a time, a system call each, and a replay's
// reading of the log made about 45,000 of them per million events.
const pgReadBufferBytes = 64 << 10

// bufferedFrontend is pgx's frontend reading through a larger buffer. What
// the buffer holds is pgx's to read, unseen by pgconn itself: these
// connections are never hijacked, nor synced (pgconn.SyncConn) to be
// handed over.
func bufferedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(r, pgReadBufferBytes), w)
}

func (m *Main) startDevPostgres(ctx context.Context) (*devpg.Cluster, error) {
	// Searchable by others: as root, the cluster runs as the postgres user,
	// which must reach its own directory below this one.
	if err := os.MkdirAll(m.Config.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	m.Logger.Info("starting the private PostgreSQL cluster", "dir", filepath.Join(m.Config.DataDir, "postgres"))
	c, err := devpg.Start(ctx, devpg.Options{
		Dir:  filepath.Join(m.Config.DataDir, "postgres"),
		Logf: func(f string, a ...any) { m.Logger.Info(fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		return nil, fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	return c, nil
}

// migrateDev migrates the private cluster as its superuser (the tables'
// owner), makes devLoginRole, the role ledgerd then serves as, and returns
// the migrations it applied.
func migrateDev(ctx context.Context, c *devpg.Cluster, logger *slog.Logger) ([]string, error) {
	pool, err := openPool(ctx, c.URL(), migrateConnsMax)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	applied, err := migrate(ctx, pool, logger)
	if err != nil {
		return applied, err
	}
	// NOSUPERUSER and the rest are the defaults; saying them keeps a role
	// that somebody altered by hand from serving with more.
	role := pgx.Identifier{devLoginRole}.Sanitize()
	if _, err := pool.Exec(ctx, `DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+devLoginRole+`') THEN
        CREATE ROLE `+role+` LOGIN;
    END IF;
END
$$;
ALTER ROLE `+role+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
GRANT `+pgx.Identifier{appRole}.Sanitize()+` TO `+role); err != nil {
		return applied, fmt.Errorf("embedded PostgreSQL: make role %s in %s: %w", devLoginRole, appRole, err)
	}
	return applied, nil
}

// migrate applies every component's pending migrations and returns their
// names.
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) ([]string, error) {
	var applied []string
	for _, p := range schemaParts() {
		pending, err := p.pending(ctx, pool)
		if err != nil {
			return applied, err
		}
		if err := p.migrate(ctx, pool); err != nil {
			return applied, err
		}
		for _, name := range pending {
			applied = append(applied, p.name+" "+filepath.Base(name))
			logger.Info("applied migration", "component", p.name, "name", filepath.Base(name))
		}
	}
	return applied, nil
}

// prepareSchema lets ledgerd serve on an up-to-date schema: with nothing
// pending it changes nothing (a ledgerd in ledger_app needs no more than
// SELECT on schema_migrations); with migrations pending it applies them if
// its role owns the schema (ledgerd started as the owner, as before `ledgerd
// migrate`), and refuses otherwise, naming them, instead of failing half-way
// on a CREATE it may not run.
//
// Errors: ErrSchemaBehind, or a database error.
func prepareSchema(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	pending, err := pendingAll(ctx, pool)
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	var user string
	var owner bool
	// The owner is a member of schema_migrations' owner; on a database with
	// no schema yet, whoever may create tables in the schema becomes it.
	if err := pool.QueryRow(ctx, `SELECT current_user, COALESCE(
		(SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass('schema_migrations')),
		has_schema_privilege(current_schema(), 'CREATE'), false)`).Scan(&user, &owner); err != nil {
		return fmt.Errorf("check schema owner: %w", err)
	}
	if !owner {
		return fmt.Errorf("%d migration(s) pending (%s) and role %s does not own the schema: "+
			"run `ledgerd migrate` as the tables' owner, then start ledgerd again: %w",
			len(pending), strings.Join(pending, ", "), user, ErrSchemaBehind)
	}
	_, err = migrate(ctx, pool, logger)
	return err
}

// Migrate is `ledgerd migrate`: it applies the pending schema migrations of
// cfg's database as the role of cfg.PostgresURL, which should own the tables
// (the role ledgerd serves as then only needs to be in ledger_app), and
// writes what it applied to out. With no URL it migrates the private
// cluster under cfg.DataDir and makes its serving role, as ledgerd does at
// every start.
//
// Errors: a connection or migration error; devpg's errors in dev mode.
func Migrate(ctx context.Context, cfg Config, logger *slog.Logger, out io.Writer) (err error) {
	if logger == nil {
		logger = slog.Default()
	}
	var applied []string
	if cfg.PostgresURL == "" {
		c, err := (&Main{Config: cfg, Logger: logger}).startDevPostgres(ctx)
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), devStopTimeout)
			defer cancel()
			err = errors.Join(err, c.Stop(stopCtx))
		}()
		if applied, err = migrateDev(ctx, c, logger); err != nil {
			return err
		}
		return reportApplied(out, applied)
	}
	pool, err := openPool(ctx, cfg.PostgresURL, migrateConnsMax)
	if err != nil {
		return err
	}
	defer pool.Close()
	if applied, err = migrate(ctx, pool, logger); err != nil {
		return err
	}
	if err := reportApplied(out, applied); err != nil {
		return err
	}
	if cfg.PartitionEvents == 0 {
		return nil
	}
	if err := eventstore.PartitionEvents(ctx, pool, cfg.PartitionEvents); err != nil {
		return err
	}
	logger.Info("events table partitioned by ledger: the old one is events_unpartitioned, drop it once checked",
		"partitions", cfg.PartitionEvents)
	return nil
}

func pendingAll(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var all []string
	for _, p := range schemaParts() {
		names, err := p.pending(ctx, pool)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			all = append(all, p.name+" "+filepath.Base(n))
		}
	}
	return all, nil
}

func reportApplied(out io.Writer, applied []string) error {
	if out == nil {
		return nil
	}
	if len(applied) == 0 {
		_, err := fmt.Fprintln(out, "schema up to date: no migration pending")
		return err
	}
	for _, a := range applied {
		if _, err := fmt.Fprintln(out, "applied", a); err != nil {
			return err
		}
	}
	return nil
}
