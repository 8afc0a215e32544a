package queries

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestStatementLinesOfOneLedger: a ledger that holds most of the lines is
// read by a scan of the table, in its order (never the key's, a heap page
// a line); one that holds few is read through the key, not the table, and
// stays so however many times the query ran before on the connection for
// a large ledger (a plan cached for it would scan the table); each read
// finds exactly its ledger's lines.
func TestStatementLinesOfOneLedger(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	cfg.MaxConns = 1 // one connection: its statements and their plans are the ones read
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	q := New(pool, nil)
	big, small := testenv.Name(t)+"-big", testenv.Name(t)+"-small"
	const bigEvents = 20_000
	for _, l := range []struct {
		name             string
		accounts, events int
	}{{big, 50, bigEvents}, {small, 2, 3}} {
		exec(t, pool, `INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $2, decode(repeat('00', 32), 'hex'))`,
			l.name, l.events)
		exec(t, pool, `INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, $2, 1, $3)`,
			l.name, movementsProjection, l.events)
		exec(t, pool, `INSERT INTO movement_ledgers (ledger) VALUES ($1)`, l.name)
		exec(t, pool, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
			SELECT $1, ledger_no, 'acc-' || a, 'USD', 2, 'credit', a FROM movement_ledgers, generate_series(1, $2) a
			WHERE ledger = $1`, l.name, l.accounts)
		// Each event, past the accounts' openings, a line on two accounts.
		exec(t, pool, `INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side, pending, kind,
				transfer_id, counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending,
				effective_at, recorded_at)
			SELECT ledger_no, 1 + (p + side) % $2, p, 0, 0, CASE side WHEN 0 THEN 'debit' ELSE 'credit' END, false,
				'TransferCommitted', 't-' || p, ARRAY['x'], 1, p, p, 0, 0, now(), now()
			FROM movement_ledgers, generate_series($2 + 1, $3) p, generate_series(0, 1) side WHERE ledger = $1`,
			l.name, l.accounts, l.events)
	}
	exec(t, pool, `ANALYZE movements`)

	read := func(ledger string, to, want int) {
		t.Helper()
		seen := map[string]bool{}
		err := q.StatementLines(t.Context(), ledger, uint64(to), func(account string, seq uint32, line *StatementLine) error {
			key := fmt.Sprintf("%s@%d/%d", account, line.Position, seq)
			if seen[key] || line.TransferID != fmt.Sprintf("t-%d", line.Position) {
				return fmt.Errorf("line %s (%s) read twice, or not this ledger's", key, line.TransferID)
			}
			seen[key] = true
			return nil
		})
		testenv.NoError(t, err)
		if len(seen) != want {
			t.Errorf("%s: %d lines read, want %d", ledger, len(seen), want)
		}
	}
	// The plan each ledger's read gets, as the read makes it.
	plan := func(ledger string, to int) string {
		t.Helper()
		tx, err := pool.BeginTx(t.Context(), statementLinesTx)
		testenv.NoError(t, err)
		defer func() { testenv.NoError(t, tx.Rollback(t.Context())) }()
		var number int64
		testenv.NoError(t, tx.QueryRow(t.Context(), `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, ledger).
			Scan(&number))
		query, err := statementLinesOf(t.Context(), tx, uint64(to))
		testenv.NoError(t, err)
		rows, err := tx.Query(t.Context(), "EXPLAIN (FORMAT JSON) "+query, ledger, to, number)
		testenv.NoError(t, err)
		text, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
		testenv.NoError(t, err)
		return text
	}
	scans := func(text, node string) bool {
		return strings.Contains(text, `"Node Type": "`+node+`"`) && strings.Contains(text, `"Relation Name": "movements"`)
	}
	bigPlan := plan(big, bigEvents)
	if !scans(bigPlan, "Seq Scan") || strings.Contains(bigPlan, `"Index Name": "movements_pkey"`) {
		t.Errorf("%s: plan %s, want a scan of the table, not of its key", big, bigPlan)
	}
	for range 8 { // past the executions after which PostgreSQL may cache one plan
		read(big, bigEvents, 2*(bigEvents-50))
	}
	read(small, 3, 2)
	if smallPlan := plan(small, 3); strings.Contains(smallPlan, `"Node Type": "Seq Scan"`) {
		t.Errorf("%s: plan %s, want its lines through the key, not the table", small, smallPlan)
	}
	var generic int64
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT COALESCE(sum(generic_plans), 0) FROM pg_prepared_statements
		WHERE statement LIKE 'SELECT h.account, %'`).Scan(&generic))
	if generic != 0 {
		t.Errorf("%d reads of the lines with a cached generic plan, want each planned for its ledger", generic)
	}
}
