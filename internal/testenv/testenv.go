// Package testenv is the shared test harness: a fresh PostgreSQL database
// and an embedded NATS JetStream server per test package, unique names per
// test so tests run in parallel, and small assertion helpers.
//
// Every package that uses it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// PostgreSQL is, in order: LEDGER_TEST_POSTGRES_URL; a server on
// 127.0.0.1:5432 (user postgres) if one answers within a second; a
// throwaway cluster made with the machine's initdb (adapters/devpg). NATS is
// LEDGER_TEST_NATS_URL, else an in-process nats-server with JetStream.
//
// testenv imports adapters/devpg, adapters/natsbus, adapters/apikeys,
// eventstore and projections (MigratedPostgresURL applies their schemas), so
// tests of those packages that use it must be external test packages
// (package natsbus_test) to avoid an import cycle.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// Environment variables the harness reads.
const (
	// EnvPostgresURL names an existing server to create test databases on;
	// the URL's user must be allowed to create and drop databases.
	EnvPostgresURL = "LEDGER_TEST_POSTGRES_URL"
	// EnvNATSURL names an existing NATS server with JetStream.
	EnvNATSURL = "LEDGER_TEST_NATS_URL"
	// envPostgresProbeAddr overrides where the local server is looked for,
	// so the throwaway-cluster path can be tested on a machine that has one.
	envPostgresProbeAddr = "LEDGER_TEST_POSTGRES_PROBE_ADDR"
)

const (
	postgresProbeAddrDefault = "127.0.0.1:5432"
	// postgresProbeTimeout is how long a local server has to answer.
	postgresProbeTimeout = time.Second
	// postgresSetupTimeout bounds choosing and starting the server.
	postgresSetupTimeout = 2 * time.Minute
	// postgresAdminTimeout bounds one CREATE or DROP DATABASE.
	postgresAdminTimeout = time.Minute
	// postgresAdminConnsMax bounds concurrent CREATE/DROP DATABASE: each
	// copies a template, and a storm of them only queues on the disk.
	postgresAdminConnsMax = 4
	// nameBytesMax is PostgreSQL's identifier limit (NAMEDATALEN-1), also
	// used for ledger and stream names.
	nameBytesMax = 63
	// nameSuffixBytes random bytes (hex: twice as many chars) make names
	// unique across tests, packages and runs sharing one server.
	nameSuffixBytes = 5
	// eventuallyWaitMin and eventuallyWaitMax bound Eventually's backoff.
	eventuallyWaitMin = time.Millisecond
	eventuallyWaitMax = 50 * time.Millisecond
)

// errNoMain is why a harness function refuses to start anything: only Main
// can stop it afterwards.
var errNoMain = errors.New("testenv needs `func TestMain(m *testing.M) { testenv.Main(m) }` " +
	"in this package, to stop the servers it starts")

// harness is the test binary's shared state: one test package's servers,
// started on first use and stopped by Main. This is the one place package
// state is needed, because testing offers no per-package hook but TestMain.
var harness struct {
	mainActive atomic.Bool

	pgOnce sync.Once
	pg     *pgServer
	pgErr  error

	// schemaOnce makes schemaDB: a database with ledgerd's whole schema,
	// the template of MigratedPostgresURL's databases.
	schemaOnce sync.Once
	schemaDB   string
	schemaErr  error

	natsOnce sync.Once
	nats     *natsbus.Embedded
	natsDir  string
	natsErr  error
}

// Main runs the package's tests, stops what the harness started and exits
// with the tests' exit code (1 if they passed but stopping failed).
func Main(m *testing.M) {
	harness.mainActive.Store(true)
	code := m.Run()
	if err := errors.Join(examples.cleanUp(), shutdown()); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func shutdown() error {
	var errs []error
	if harness.nats != nil {
		harness.nats.Shutdown()
		if err := os.RemoveAll(harness.natsDir); err != nil {
			errs = append(errs, fmt.Errorf("remove nats store: %w", err))
		}
	}
	if harness.schemaDB != "" {
		if err := harness.pg.exec("DROP DATABASE IF EXISTS " + pgx.Identifier{harness.schemaDB}.Sanitize() + " WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop template database %s: %w", harness.schemaDB, err))
		}
	}
	if pg := harness.pg; pg != nil && pg.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
		defer cancel()
		if err := pg.cluster.Stop(ctx); err != nil {
			// Keep the dir: removing it under a live server loses the log.
			return errors.Join(append(errs, fmt.Errorf("stop throwaway postgres in %s: %w", pg.dir, err))...)
		}
		if err := os.RemoveAll(pg.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove throwaway postgres: %w", err))
		}
	}
	return errors.Join(errs...)
}

// pgServer is the package's PostgreSQL server and how to administer it.
type pgServer struct {
	admin   url.URL        // the maintenance database; test URLs swap the path
	cluster *devpg.Cluster // nil unless the harness started it
	dir     string         // the throwaway cluster's directory
	sem     chan struct{}  // postgresAdminConnsMax slots
}

// PostgresURL creates a fresh, empty database (UTF8, collation C) for this
// test only, dropped when the test ends, and returns its URL. It fails the
// test when no server can be found or started. The server must be
// PostgreSQL 13 or later (DROP DATABASE ... WITH (FORCE)).
func PostgresURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, server(t), emptyTemplate)
}

// MigratedPostgresURL is PostgresURL with ledgerd's whole schema applied
// (the event store's, the API keys' and the read models' migrations, in
// ledgerd's order): a copy of a template database migrated once per test
// binary. A copy costs a fraction of creating a database and migrating it,
// which most tests would do otherwise; tests of the migrations themselves
// use PostgresURL.
func MigratedPostgresURL(t testing.TB) string {
	t.Helper()
	s := server(t)
	harness.schemaOnce.Do(func() { harness.schemaDB, harness.schemaErr = s.migratedTemplate(t) })
	if harness.schemaErr != nil {
		t.Fatalf("testenv: template database with the schema: %v", harness.schemaErr)
	}
	return newDatabase(t, s, "TEMPLATE "+pgx.Identifier{harness.schemaDB}.Sanitize())
}

// emptyTemplate makes an empty database: template0 never has connections
// (template1 may: someone's psql), and lets the encoding and collation be
// chosen whatever the server's are.
const emptyTemplate = "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"

// server returns the package's server, choosing it on first use.
func server(t testing.TB) *pgServer {
	t.Helper()
	if !harness.mainActive.Load() {
		t.Fatal(errNoMain)
	}
	harness.pgOnce.Do(func() { harness.pg, harness.pgErr = choosePostgres(t) })
	if harness.pgErr != nil {
		t.Fatalf("testenv: no postgres for tests: %v", harness.pgErr)
	}
	return harness.pg
}

// migratedTemplate creates a database with ledgerd's schema and returns its
// name; Main drops it. Nothing stays connected to it, so that it can be
// copied (PostgreSQL copies only a database nobody is connected to).
func (s *pgServer) migratedTemplate(t testing.TB) (string, error) {
	const prefix = "schema_"
	n := name(t, '_')
	db := prefix + n[max(0, len(n)-(nameBytesMax-len(prefix))):] // keep the random end
	ident := pgx.Identifier{db}.Sanitize()
	if err := s.exec("CREATE DATABASE " + ident + " " + emptyTemplate); err != nil {
		return "", fmt.Errorf("create %s: %w", db, err)
	}
	u := s.admin
	u.Path, u.RawPath = "/"+db, ""
	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return db, fmt.Errorf("connect to %s: %w", db, err)
	}
	defer pool.Close()
	for _, migrate := range []func(context.Context, *pgxpool.Pool) error{
		eventstore.Migrate, apikeys.Migrate, projections.Migrate, webhooks.Migrate,
	} {
		if err := migrate(ctx, pool); err != nil {
			return db, fmt.Errorf("migrate %s: %w", db, err)
		}
	}
	return db, nil
}

// LinguisticPostgresURL is PostgresURL with a linguistic collation, ICU
// en-US (where ':' and ';' weigh nothing at first), instead of C: for the
// tests that the read models keep ids in byte order whatever the
// database's locale. It skips the test when the server makes no ICU
// database.
func LinguisticPostgresURL(t testing.TB) string {
	t.Helper()
	u, err := createDatabase(t, server(t), "TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'")
	if err != nil {
		t.Skipf("testenv: this PostgreSQL makes no ICU database: %v", err)
	}
	return u
}

// newDatabase creates a database for t from template (a TEMPLATE clause),
// dropped when t ends, and returns its URL.
func newDatabase(t testing.TB, s *pgServer, template string) string {
	t.Helper()
	u, err := createDatabase(t, s, template)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return u
}

// createDatabase is newDatabase, its error returned.
func createDatabase(t testing.TB, s *pgServer, template string) (string, error) {
	t.Helper()
	db := name(t, '_')
	ident := pgx.Identifier{db}.Sanitize()
	if err := s.exec("CREATE DATABASE " + ident + " " + template); err != nil {
		return "", fmt.Errorf("create database %s: %w", db, err)
	}
	t.Cleanup(func() {
		// FORCE ends the test's leftover connections, e.g. a pool whose
		// Close is still pending.
		if err := s.exec("DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", db, err)
		}
	})
	u := s.admin
	u.Path, u.RawPath = "/"+db, ""
	return u.String(), nil
}

// exec runs one statement on a fresh connection to the maintenance
// database: CREATE DATABASE cannot run in a transaction, and a connection
// per statement costs little next to copying a template.
func (s *pgServer) exec(sql string) error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), postgresAdminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.admin.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// choosePostgres picks the package's server in the order of the package
// doc; t only receives log lines.
func choosePostgres(t testing.TB) (*pgServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	newServer := func(u *url.URL) *pgServer {
		return &pgServer{admin: *u, sem: make(chan struct{}, postgresAdminConnsMax)}
	}
	if raw := os.Getenv(EnvPostgresURL); raw != "" {
		u, err := parsePostgresURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvPostgresURL, err)
		}
		// Named explicitly, so no falling back: a dead server is an error.
		if err := ping(ctx, u); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvPostgresURL, err)
		}
		t.Logf("testenv: postgres from %s", EnvPostgresURL)
		return newServer(u), nil
	}
	addr := os.Getenv(envPostgresProbeAddr)
	if addr == "" {
		addr = postgresProbeAddrDefault
	}
	probe := &url.URL{Scheme: "postgres", User: url.User("postgres"), Host: addr, Path: "/postgres",
		RawQuery: "sslmode=disable"}
	probeCtx, probeCancel := context.WithTimeout(ctx, postgresProbeTimeout)
	err := ping(probeCtx, probe)
	probeCancel()
	if err == nil {
		t.Logf("testenv: postgres at %s", addr)
		return newServer(probe), nil
	}
	t.Logf("testenv: no postgres at %s (%v): starting a throwaway cluster", addr, err)
	s, err := startThrowaway(ctx, t)
	if err != nil {
		return nil, err
	}
	s.sem = make(chan struct{}, postgresAdminConnsMax)
	return s, nil
}

func parsePostgresURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("want a postgres:// url, got scheme %q", u.Scheme)
	}
	return u, nil
}

func ping(ctx context.Context, u *url.URL) error {
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// throwawaySettings trade durability against an OS crash for speed: with
// fsync off a killed postgres still recovers every commit from the page
// cache, which is all the fault tests kill.
var throwawaySettings = map[string]string{
	"fsync":          "off",
	"shared_buffers": "128MB",
}

func startThrowaway(ctx context.Context, t testing.TB) (*pgServer, error) {
	// Under the temp dir, which is world-searchable, so the postgres user
	// can reach it when we are root; devpg hands this dir to that user.
	dir, err := os.MkdirTemp("", "ledger-testpg-")
	if err != nil {
		return nil, fmt.Errorf("throwaway postgres dir: %w", err)
	}
	began := time.Now()
	// No Logf: its lines would outlive the test that happened to start it.
	c, err := devpg.Start(ctx, devpg.Options{Dir: dir, Settings: throwawaySettings})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("throwaway postgres (or set %s): %w", EnvPostgresURL, err),
			os.RemoveAll(dir))
	}
	t.Logf("testenv: throwaway postgres in %s up in %v", dir, time.Since(began).Round(time.Millisecond))
	u, err := url.Parse(c.URLFor("postgres"))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("throwaway postgres url: %w", err), c.Stop(ctx))
	}
	return &pgServer{admin: *u, cluster: c, dir: dir}, nil
}

// NATSURL returns the URL of the package's NATS server with JetStream:
// LEDGER_TEST_NATS_URL if set, else an in-process server started on first
// use and shut down by Main. Tests share it, so each names its own streams
// (see Name).
func NATSURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvNATSURL); u != "" {
		return u
	}
	if !harness.mainActive.Load() {
		t.Fatal(errNoMain)
	}
	harness.natsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ledger-testnats-")
		if err != nil {
			harness.natsErr = fmt.Errorf("nats store dir: %w", err)
			return
		}
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: dir})
		if err != nil {
			harness.natsErr = errors.Join(err, os.RemoveAll(dir))
			return
		}
		harness.nats, harness.natsDir = e, dir
	})
	if harness.natsErr != nil {
		t.Fatalf("testenv: embedded nats: %v", harness.natsErr)
	}
	return harness.nats.ClientURL()
}

// Name returns a name unique to this call, matching [a-z0-9][a-z0-9-]{0,62},
// made from the test's name and a random suffix: for a test's ledger and
// JetStream stream, so that tests sharing a server never meet.
func Name(t testing.TB) string {
	t.Helper()
	return name(t, '-')
}

// name is the test's name lowercased, with runs of other characters turned
// into sep, cut from the front to fit, then sep and a random hex suffix.
func name(t testing.TB, sep byte) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pendingSep && b.Len() > 0 {
				b.WriteByte(sep)
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	var random [nameSuffixBytes]byte
	_, _ = rand.Read(random[:]) // Never fails: crypto/rand crashes the program instead.
	suffix := hex.EncodeToString(random[:])
	base := b.String()
	// Keep the end: a subtest's own name tells more than its parent's.
	if room := nameBytesMax - 1 - len(suffix); len(base) > room {
		base = strings.TrimLeft(base[len(base)-room:], string(sep))
	}
	if base == "" {
		return suffix
	}
	return base + string(sep) + suffix
}

// NoError fails the test at once when err is not nil.
func NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// Eventually calls cond until it returns nil, waiting 1ms after the first
// try and backing off to 50ms, and fails the test with cond's last error
// once timeout has passed. Tests wait for conditions with it instead of
// sleeping for a guessed time.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := eventuallyWaitMin
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("condition not met after %v: %v", timeout, err)
			return // Only reached with a testing.TB whose Fatalf returns.
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, eventuallyWaitMax)
	}
}

// ReplicatedPostgres starts a private PostgreSQL cluster and a streaming
// replica of it (pg_basebackup), with the machine's PostgreSQL binaries,
// both stopped and removed at cleanup; tests that stop or pause the replica
// need their own, not the shared server. The test is skipped where
// PostgreSQL is not installed.
func ReplicatedPostgres(t testing.TB) (primary, replica *devpg.Cluster) {
	t.Helper()
	start := func(name string, of *devpg.Cluster) *devpg.Cluster {
		// Under the world-searchable temp dir: as root, devpg runs the
		// server as the postgres user, which must reach it.
		dir, err := os.MkdirTemp("", "ledger-testpg-"+name+"-")
		NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) }) // after the Stop below, or alone when the start fails
		c, err := devpg.Start(context.Background(), devpg.Options{Dir: dir, Settings: throwawaySettings, ReplicaOf: of})
		if errors.Is(err, devpg.ErrNoPostgres) {
			t.Skip(err)
		}
		NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("stop the %s: %v", name, err)
			}
		})
		return c
	}
	primary = start("primary", nil)
	return primary, start("replica", primary)
}
