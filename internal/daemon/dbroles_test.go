package daemon_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestServeWithLoginPerRole: ledgerd with one login per database role (the
// writer's -postgres-url, a projector's, a reader's and a key manager's
// URL) serves the whole tour, each pool connected as its own login. A
// writer-only login given no URL for a job it may not do is refused at
// start, naming the flag to set.
func TestServeWithLoginPerRole(t *testing.T) {
	t.Parallel()
	ownerURL := testenv.PostgresURL(t)
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: ownerURL}, discardLogger(), nil))
	writerURL := testenv.LoginURL(t, ownerURL, "ledger_writer")
	projectorURL := testenv.LoginURL(t, ownerURL, "ledger_projector")
	readURL := testenv.LoginURL(t, ownerURL, "ledger_reader")
	keysURL := testenv.LoginURL(t, ownerURL, "ledger_keys")

	for _, c := range []struct {
		opt  func(*daemon.Config)
		flag string
	}{
		{func(*daemon.Config) {}, "-postgres-projector-url"},
		{func(c *daemon.Config) { c.PostgresProjectorURL, c.PostgresReadURL = projectorURL, readURL }, "-postgres-keys-url"},
		{func(c *daemon.Config) {
			c.PostgresProjectorURL, c.PostgresReadURL, c.PostgresKeysURL = projectorURL, keysURL, keysURL
		},
			"-postgres-read-url"},
	} {
		_, err := startAs(t, writerURL, c.opt)
		if !errors.Is(err, daemon.ErrRoleMissing) || !strings.Contains(err.Error(), c.flag) {
			t.Fatalf("ledgerd with a login missing for %s: %v, want ErrRoleMissing naming the flag", c.flag, err)
		}
	}

	h, err := startAs(t, writerURL, func(c *daemon.Config) {
		c.PostgresProjectorURL, c.PostgresReadURL, c.PostgresKeysURL = projectorURL, readURL, keysURL
	})
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
	rebuild(t, admin, ledger, "balances")
	pos = h.transferOK(t, ledger, transfer("t2", "alice", "bob", "5.00", "USD"))
	if b := h.balances(t, ledger, pos, "bob")["bob"]; b.GetBalance() != "15.00" {
		t.Fatalf("bob's balance after the rebuild %s, want 15.00", b.GetBalance())
	}
	key, err := admin.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{Roles: []string{"reader"}, Ledgers: []string{ledger}})
	testenv.NoError(t, err)
	if apikeys.ID(key.GetKey()) == "" {
		t.Fatalf("CreateApiKey returned key %q", key.GetKey())
	}
	if out := h.runCtlOK(t, ledger, "audit", "verify"); !strings.Contains(out, "clean") {
		t.Fatalf("audit verify: %s", out)
	}

	// Each pool is its own login.
	owner, err := pgx.Connect(ctx(t), ownerURL)
	testenv.NoError(t, err)
	defer owner.Close(context.Background())
	u, err := url.Parse(ownerURL)
	testenv.NoError(t, err)
	rows, err := owner.Query(ctx(t), `SELECT DISTINCT usename::text FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY 1`, strings.TrimPrefix(u.Path, "/"))
	testenv.NoError(t, err)
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	var want []string
	for _, l := range []string{writerURL, projectorURL, readURL, keysURL} {
		lu, err := url.Parse(l)
		testenv.NoError(t, err)
		want = append(want, lu.User.Username())
	}
	slices.Sort(want)
	if !slices.Equal(users, want) {
		t.Fatalf("ledgerd connects as %v, want %v", users, want)
	}
}

// TestRoleGrants audits the schema every migration made, role by role: the
// writer appends (through append_events) and writes ledgers but writes
// neither events, heads, read models nor keys directly; the projector writes read models; the reader reads; the key
// manager writes keys; ledger_app is their union. A migration that adds a
// table without its grants fails here.
func TestRoleGrants(t *testing.T) {
	t.Parallel()
	ownerURL := testenv.PostgresURL(t)
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: ownerURL}, discardLogger(), nil))
	conn, err := pgx.Connect(ctx(t), ownerURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	type privs string // of "SIUDT": SELECT, INSERT, UPDATE, DELETE, TRUNCATE
	roles := []string{"ledger_writer", "ledger_projector", "ledger_reader", "ledger_keys", "ledger_app"}
	got := map[string]map[string]privs{}
	for _, role := range roles {
		rows, err := conn.Query(ctx(t), `SELECT c.relname,
			CASE WHEN has_table_privilege($1, c.oid, 'SELECT') THEN 'S' ELSE '' END ||
			CASE WHEN has_table_privilege($1, c.oid, 'INSERT') THEN 'I' ELSE '' END ||
			CASE WHEN has_table_privilege($1, c.oid, 'UPDATE') THEN 'U' ELSE '' END ||
			CASE WHEN has_table_privilege($1, c.oid, 'DELETE') THEN 'D' ELSE '' END ||
			CASE WHEN has_table_privilege($1, c.oid, 'TRUNCATE') THEN 'T' ELSE '' END
			FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')`, role)
		testenv.NoError(t, err)
		got[role] = map[string]privs{}
		for rows.Next() {
			var name string
			var p privs
			testenv.NoError(t, rows.Scan(&name, &p))
			got[role][name] = p
		}
		testenv.NoError(t, rows.Err())
	}
	// Per table: writer, projector, reader, keys, app.
	exact := map[string][5]privs{
		"events":            {"S", "S", "S", "", "S"},
		"ledger_heads":      {"S", "S", "S", "", "S"},
		"ledgers":           {"SIU", "S", "S", "", "SIU"},
		"snapshots":         {"SID", "", "", "", "SID"},
		"schema_migrations": {"S", "S", "S", "S", "S"},
		"api_keys":          {"", "", "", "SIU", "SIU"},
		// The webhook dispatcher and WebhookService run as the projector;
		// readers get nothing: subscriptions hold their signing secrets.
		"webhook_subscriptions": {"", "SIUD", "", "", "SIUD"},
		"webhook_deliveries":    {"", "SIUD", "", "", "SIUD"},
		// Every node registers itself, whatever its logins (a query node
		// may hold only a reader's); leases are recorded by their takers.
		"ledgerd_nodes":     {"SIU", "SIU", "SIU", "", "SIU"},
		"ledger_placements": {"SIU", "SIU", "S", "", "SIU"},
	}
	// The read models: rebuilds write shadow rows and swap them in with
	// UPDATE and DELETE, so these four and never TRUNCATE.
	for _, name := range []string{"projection_checkpoints", "assets", "trial_accounts", "trial_balances",
		"trial_balance_history", "movements", "movement_ledgers", "movement_heads", "movement_assets", "movement_clock",
		"transfers", "transfer_ledgers", "recon_accounts", "recon_lines", "recon_movements",
		"recon_matches", "recon_journal", "recon_generations", "alerts", "alert_rules"} {
		exact[name] = [5]privs{"", "SIUD", "S", "", "SIUD"}
	}
	for name := range got["ledger_app"] {
		want, known := exact[name]
		if !known {
			// A table added by a later migration: a read model must be
			// granted as those above; anything else, list it above.
			want = [5]privs{"", "SIUD", "S", "", "SIUD"}
		}
		for i, role := range roles {
			if got[role][name] != want[i] {
				t.Errorf("%s on %s: %q, want %q", role, name, got[role][name], want[i])
			}
		}
	}
	for name := range exact {
		if _, ok := got["ledger_app"][name]; !ok {
			t.Errorf("no table %s: the audit above missed it", name)
		}
	}
	// Events are appended, and the head moved, through append_events,
	// which only the writer (and the union) may call.
	for _, role := range append(roles, "public") {
		var can bool
		testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT has_function_privilege($1,
			'append_events(text, bigint, text[], smallint[], timestamptz[], text[], json[], bytea[], bytea[])', 'EXECUTE')`,
			role).Scan(&can))
		if want := role == "ledger_writer" || role == "ledger_app"; can != want {
			t.Errorf("%s may call append_events: %v, want %v", role, can, want)
		}
	}
	// Views: the statement lines and the transfers by ledger (projections
	// 0023, 0024) are for whoever reads the read models.
	for _, view := range []string{"movement_lines", "transfer_rows"} {
		for _, role := range append(roles, "public") {
			var can bool
			testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT has_table_privilege($1, $2, 'SELECT')`, role, view).Scan(&can))
			if want := role == "ledger_projector" || role == "ledger_reader" || role == "ledger_app"; can != want {
				t.Errorf("%s may read %s: %v, want %v", role, view, can, want)
			}
		}
	}
	// Sequences (serial, identity) need USAGE too, by the roles that write
	// their tables: movement_ledger_no numbers the statement lines' ledger
	// keys (projections 0023), which the projector writes.
	usage := map[string][]string{"movement_ledger_no": {"ledger_projector", "ledger_app"},
		"transfer_ledger_no": {"ledger_projector", "ledger_app"}}
	rows, err := conn.Query(ctx(t), `SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'S'`)
	testenv.NoError(t, err)
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	for _, seq := range seqs {
		users, known := usage[seq]
		if !known {
			t.Errorf("sequence %s: grant USAGE to the roles that write its table, and list it here", seq)
			continue
		}
		for _, role := range append(roles, "public") {
			var can bool
			testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT has_sequence_privilege($1, $2, 'USAGE')`, role, seq).Scan(&can))
			if want := slices.Contains(users, role); can != want {
				t.Errorf("%s may use sequence %s: %v, want %v", role, seq, can, want)
			}
		}
	}
	if len(seqs) != len(usage) {
		t.Errorf("sequences %v, want those of %v", seqs, usage)
	}
}
