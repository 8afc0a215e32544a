package projections_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestAccountIDsInByteOrderWhateverTheLocale: in a database whose own
// collation is linguistic (ICU en-US, where ':' and ';' weigh nothing at
// first), the read models still keep account ids in byte order: every
// column holding an id or a category name is COLLATE "C", so a prefix is a
// range of keys holding exactly the ids that start with it, and id order is
// byte order.
func TestAccountIDsInByteOrderWhateverTheLocale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.LinguisticPostgresURL(t))
	testenv.NoError(t, err)
	defer pool.Close()
	testenv.NoError(t, projections.Migrate(ctx, pool))

	rows, err := pool.Query(ctx, `SELECT table_name || '.' || column_name, coalesce(collation_name, '')
		FROM information_schema.columns WHERE table_schema = current_schema()
		AND column_name IN ('account', 'counter_accounts', 'name', 'parent') AND table_name <> 'schema_migrations' ORDER BY 1`)
	testenv.NoError(t, err)
	columns := 0
	for rows.Next() {
		var col, coll string
		testenv.NoError(t, rows.Scan(&col, &coll))
		columns++
		if coll != "C" {
			t.Errorf("%s: collation %q, want C", col, coll)
		}
	}
	testenv.NoError(t, rows.Err())
	if columns < 9 {
		t.Fatalf("%d id columns found, want the read models' (at least 9)", columns)
	}

	// The tables keyed by account id: the accounts (ListAccounts' prefix
	// ranges), the statement heads (balances, roll-ups' patterns), the
	// trial balance's accounts.
	ids := []string{"users", "users:1:wallet", "users:2", "users;x", "usersa", "users:10"}
	for _, table := range []struct{ name, insert string }{
		{"accounts", `INSERT INTO accounts (ledger, account, asset, normal_balance, opened_position, opened_at, position)
			VALUES ('l', $1, 'USD', 'credit', 1, now(), 1)`},
		{"movement_heads", `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
			SELECT 'l', 1, $1, 'USD', 2, 'credit', coalesce(max(opened_position), 0) + 1 FROM movement_heads`},
		{"trial_accounts", `INSERT INTO trial_accounts (ledger, account, asset, scale, normal_balance, position)
			VALUES ('l', $1, 'USD', 2, 'credit', 1)`},
	} {
		for _, id := range ids {
			_, err := pool.Exec(ctx, table.insert, id)
			testenv.NoError(t, err)
		}
		rows, err = pool.Query(ctx, `SELECT account FROM `+pgx.Identifier{table.name}.Sanitize()+`
			WHERE ledger = 'l' AND account >= 'users:' AND account < 'users;' ORDER BY account`)
		testenv.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		testenv.NoError(t, err)
		if want := []string{"users:10", "users:1:wallet", "users:2"}; !slices.Equal(got, want) { // '0' < ':'
			t.Errorf("%s: the prefix users: as a range: %v, want %v (byte order)", table.name, got, want)
		}
	}
}
