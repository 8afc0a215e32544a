package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// appLogin makes a login role in ledger_app (testenv.LoginURL) and returns
// the database's URL as that role.
func appLogin(t *testing.T, ownerURL string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), ownerURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app')`).Scan(&exists))
	if !exists {
		// Made by the first migration of any database of the cluster; do it
		// here for a cluster where no test migrated yet.
		_, err = conn.Exec(ctx(t), `CREATE ROLE ledger_app NOLOGIN`)
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			testenv.NoError(t, err)
		}
	}
	return testenv.LoginURL(t, ownerURL, "ledger_app")
}

// startAs runs ledgerd on the test's database as the role of pgURL; opts
// change its configuration before it starts.
func startAs(t *testing.T, pgURL string, opts ...func(*daemon.Config)) (*harness, error) {
	t.Helper()
	h := &harness{pgURL: pgURL, key: newKey(t)}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: h.key},
		Logger: discardLogger(),
	}
	for _, o := range opts {
		o(&h.m.Config)
	}
	if err := h.m.Run(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(h.m.Close)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.cmd, h.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	return h, nil
}

// TestServeAsAppRole: `ledgerd migrate` as the owner, then ledgerd as a
// login role that is only a member of ledger_app serves the whole tour:
// assets, accounts, transfers, balances and statements from the
// projections, a projection rebuild, a new API key, audit verify. Before,
// it failed at start with "permission denied for schema public".
func TestServeAsAppRole(t *testing.T) {
	t.Parallel()
	ownerURL := testenv.PostgresURL(t)
	var out bytes.Buffer
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: ownerURL}, discardLogger(), &out))
	if !strings.Contains(out.String(), "applied eventstore 0001_events.sql") {
		t.Errorf("migrate printed %q, want the migrations it applied", out.String())
	}
	out.Reset()
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: ownerURL}, discardLogger(), &out))
	if !strings.Contains(out.String(), "up to date") {
		t.Errorf("second migrate printed %q, want up to date", out.String())
	}

	appURL := appLogin(t, ownerURL)
	h, err := startAs(t, appURL)
	testenv.NoError(t, err)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	if b := h.balances(t, ledger, pos, "bob")["bob"]; b.GetBalance() != "10.00" {
		t.Fatalf("bob's balance %s, want 10.00", b.GetBalance())
	}
	st, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if len(st.GetLines()) != 1 || st.GetLines()[0].GetTransferId() != "t1" {
		t.Fatalf("bob's statement %v, want one line of t1", st.GetLines())
	}

	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	admin := ledgerv1.NewAdminServiceClient(conn)
	for _, name := range []string{"balances", "movements", "transfers", "reconciliation"} {
		rebuild(t, admin, ledger, name)
	}
	pos = h.transferOK(t, ledger, transfer("t2", "alice", "bob", "5.00", "USD"))
	if b := h.balances(t, ledger, pos, "bob")["bob"]; b.GetBalance() != "15.00" {
		t.Fatalf("bob's balance after the rebuilds %s, want 15.00", b.GetBalance())
	}
	key, err := admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}, Ledgers: []string{ledger}})
	testenv.NoError(t, err)
	if apikeys.ID(key.GetKey()) == "" {
		t.Fatalf("CreateApiKey returned key %q", key.GetKey())
	}
	if out := h.runCtlOK(t, ledger, "audit", "verify"); !strings.Contains(out, "clean") {
		t.Fatalf("audit verify as ledger_app: %s", out)
	}

	// And the role really is not the owner: it may not change the log.
	app, err := pgx.Connect(ctx(t), appURL)
	testenv.NoError(t, err)
	defer app.Close(context.Background())
	if _, err := app.Exec(ctx(t), `CREATE TABLE intruder (x int)`); err == nil {
		t.Errorf("the ledger_app login created a table")
	}
	if _, err := app.Exec(ctx(t), `DELETE FROM events`); err == nil {
		t.Errorf("the ledger_app login deleted events")
	}
}

// TestServeAsAppRoleRefusesPendingMigrations: a ledgerd that does not own
// the schema neither tries to migrate (which failed with a bare "permission
// denied") nor serves a schema it does not know: it refuses, naming what is
// pending and `ledgerd migrate`.
func TestServeAsAppRoleRefusesPendingMigrations(t *testing.T) {
	t.Parallel()
	ownerURL := testenv.PostgresURL(t)
	appURL := appLogin(t, ownerURL)

	_, err := startAs(t, appURL)
	if !errors.Is(err, daemon.ErrSchemaBehind) || !strings.Contains(err.Error(), "ledgerd migrate") ||
		!strings.Contains(err.Error(), "eventstore 0001_events.sql") {
		t.Fatalf("ledger_app on an empty database: %v, want ErrSchemaBehind naming the migrations and `ledgerd migrate`", err)
	}

	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: ownerURL}, discardLogger(), nil))
	owner, err := pgx.Connect(ctx(t), ownerURL)
	testenv.NoError(t, err)
	defer owner.Close(context.Background())
	// A newer ledgerd's migration that this database has not had yet.
	_, err = owner.Exec(ctx(t), `DELETE FROM schema_migrations WHERE component = 'projections' AND name = 'migrations/0008_movement_heads_static.sql'`)
	testenv.NoError(t, err)
	_, err = startAs(t, appURL)
	if !errors.Is(err, daemon.ErrSchemaBehind) || !strings.Contains(err.Error(), "projections 0008_movement_heads_static.sql") {
		t.Fatalf("ledger_app with a migration pending: %v, want ErrSchemaBehind naming it", err)
	}
	var n int
	testenv.NoError(t, owner.QueryRow(ctx(t), `SELECT count(*) FROM schema_migrations WHERE name LIKE '%0008_movement_heads_static.sql'`).Scan(&n))
	if n != 0 {
		t.Fatalf("the refused ledgerd recorded the migration (%d rows)", n)
	}

	// Once the owner has applied it, the same role serves.
	_, err = owner.Exec(ctx(t), `INSERT INTO schema_migrations (component, name) VALUES ('projections', 'migrations/0008_movement_heads_static.sql')`)
	testenv.NoError(t, err)
	_, err = startAs(t, appURL)
	testenv.NoError(t, err)
}

// devCluster connects as the superuser to the private cluster of a dev mode
// ledgerd in dataDir (its socket is in dataDir/postgres/run when short).
func devCluster(t *testing.T, dataDir string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), "postgres://postgres@/"+devpg.Database+"?host="+dataDir+"/postgres/run&sslmode=disable")
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestDevModeServesAsAppRole: on its private cluster ledgerd migrates as the
// superuser and serves as ledgerd_app, a member of ledger_app, like a
// production ledgerd. Before, every connection was the superuser's.
func TestDevModeServesAsAppRole(t *testing.T) {
	t.Parallel()
	dir := searchableTempDir(t)
	m := &daemon.Main{Config: daemon.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir, PostgresConnsMax: 4},
		Logger: discardLogger(), Err: &bytes.Buffer{}}
	err := m.Run(context.Background())
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	testenv.NoError(t, err)
	defer m.Close()
	env := map[string]string{"LEDGER_ADDR": m.GRPCAddr(), "LEDGER_LEDGER": "demo", "LEDGER_DATA_DIR": dir}
	for _, args := range [][]string{{"asset", "define", "USD", "2"}, {"account", "open", "--asset", "USD", "alice", "bob"},
		{"transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "10.00", "--asset", "USD"}} {
		if code, out, errOut := runCtlEnv(t, env, args...); code != 0 {
			t.Fatalf("ledgerctl %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	// The projections read the stream of the embedded NATS, which has no
	// port: in-process only.
	if url := m.EmbeddedNATSURL(); url != "" {
		t.Fatalf("the embedded NATS listens at %s; want in-process only", url)
	}
	if code, out, errOut := runCtlEnv(t, env, "balance", "--min-position", "4", "bob"); code != 0 || !strings.Contains(out, "10.00") {
		t.Fatalf("ledgerctl balance bob: exit %d\n%s%s", code, out, errOut)
	}

	conn := devCluster(t, dir)
	rows, err := conn.Query(ctx(t), `SELECT DISTINCT usename::text FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY 1`, devpg.Database)
	testenv.NoError(t, err)
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	if !slices.Equal(users, []string{"ledgerd_app"}) {
		t.Fatalf("ledgerd connects as %v, want only ledgerd_app", users)
	}
	var super, member bool
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT rolsuper, pg_has_role('ledgerd_app', 'ledger_app', 'MEMBER')
		FROM pg_roles WHERE rolname = 'ledgerd_app'`).Scan(&super, &member))
	if super || !member {
		t.Fatalf("ledgerd_app: superuser %v, member of ledger_app %v; want false, true", super, member)
	}
}

// TestDevModeSecondServerRefused: a second ledgerd on the same data dir is
// refused, naming the dir and the holder's pid, and the first keeps serving.
// Before, the second restarted the first one's PostgreSQL under it.
func TestDevModeSecondServerRefused(t *testing.T) {
	t.Parallel()
	dir := searchableTempDir(t)
	run := func() (*daemon.Main, error) {
		m := &daemon.Main{Config: daemon.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir, PostgresConnsMax: 4},
			Logger: discardLogger(), Err: &bytes.Buffer{}}
		return m, m.Run(context.Background())
	}
	first, err := run()
	if errors.Is(err, devpg.ErrNoPostgres) {
		t.Skip(err)
	}
	testenv.NoError(t, err)
	defer first.Close()
	env := map[string]string{"LEDGER_ADDR": first.GRPCAddr(), "LEDGER_LEDGER": "demo", "LEDGER_DATA_DIR": dir}
	if code, out, errOut := runCtlEnv(t, env, "asset", "define", "USD", "2"); code != 0 {
		t.Fatalf("ledgerctl asset define: exit %d\n%s%s", code, out, errOut)
	}

	second, err := run()
	if err == nil {
		second.Close()
	}
	if !errors.Is(err, daemon.ErrDataDirInUse) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "ledgerd pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second ledgerd on %s: %v, want ErrDataDirInUse naming the dir and the holder's pid", dir, err)
	}
	if code, out, errOut := runCtlEnv(t, env, "account", "open", "--asset", "USD", "alice", "bob"); code != 0 {
		t.Fatalf("the first ledgerd after a refused second: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCtlEnv(t, env, "transfer", "--id", "t1", "--from", "alice", "--to", "bob", "--amount", "1.00", "--asset", "USD"); code != 0 {
		t.Fatalf("the first ledgerd after a refused second: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSecondServerRefusedOnEmbeddedNATS: the data dir is locked whenever an
// embedded server keeps its data there, here JetStream's store beside an
// external PostgreSQL; a ledgerd with both servers external locks nothing.
func TestSecondServerRefusedOnEmbeddedNATS(t *testing.T) {
	t.Parallel()
	dir, pgURL := t.TempDir(), testenv.MigratedPostgresURL(t)
	run := func(natsURL string) (*daemon.Main, error) {
		m := &daemon.Main{Config: daemon.Config{PostgresURL: pgURL, NATSURL: natsURL, GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: dir, PostgresConnsMax: 4, AdminKey: newKey(t)}, Logger: discardLogger()}
		return m, m.Run(context.Background())
	}
	first, err := run("")
	testenv.NoError(t, err)
	defer first.Close()
	second, err := run("")
	if err == nil {
		second.Close()
	}
	if !errors.Is(err, daemon.ErrDataDirInUse) {
		t.Fatalf("second ledgerd with an embedded NATS in %s: %v, want ErrDataDirInUse", dir, err)
	}
	external, err := run(testenv.NATSURL(t))
	testenv.NoError(t, err)
	external.Close()
	first.Close()
	again, err := run("") // Close released the dir.
	testenv.NoError(t, err)
	again.Close()
}
