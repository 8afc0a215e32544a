package queries

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestStatementLinesOfOneLedger: a ledger's lines are read in the table's
// order whatever its share of the table: by a sequential scan for the
// ledger that holds most of it, by a bitmap scan of its own pages for one
// that holds few (never the key's order, a heap page a line), and each
// read finds exactly its ledger's lines.
func TestStatementLinesOfOneLedger(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	big, small := testenv.Name(t)+"-big", testenv.Name(t)+"-small"
	for _, l := range []struct {
		name             string
		accounts, events int
	}{{big, 50, 20_000}, {small, 2, 3}} {
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

	for _, l := range []struct {
		name      string
		to, lines int
		scan      string
	}{{big, 20_000, 2 * (20_000 - 50), "Seq Scan on movements"}, {small, 3, 2, "Bitmap Heap Scan on movements"}} {
		var plan []string
		tx, err := pool.BeginTx(t.Context(), statementLinesTx)
		testenv.NoError(t, err)
		rows, err := tx.Query(t.Context(), "EXPLAIN "+statementLinesSQL, l.name, l.to,
			map[string]int{big: 1, small: 2}[l.name])
		testenv.NoError(t, err)
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		testenv.NoError(t, err)
		testenv.NoError(t, tx.Rollback(t.Context()))
		text, keyOrder := strings.Join(plan, "\n"), false
		for _, node := range plan {
			node = strings.TrimLeft(node, " ->")
			keyOrder = keyOrder || strings.HasPrefix(node, "Index Scan on movements ") ||
				strings.HasPrefix(node, "Index Only Scan on movements ")
		}
		if !strings.Contains(text, l.scan) || keyOrder {
			t.Errorf("%s: plan\n%s\nwant a %s, and no index scan of the lines", l.name, text, l.scan)
		}

		seen := map[string]bool{}
		err = q.StatementLines(t.Context(), l.name, uint64(l.to), func(account string, seq uint32, line *StatementLine) error {
			key := fmt.Sprintf("%s@%d/%d", account, line.Position, seq)
			if seen[key] || line.TransferID != fmt.Sprintf("t-%d", line.Position) {
				return fmt.Errorf("line %s (%s) read twice, or not this ledger's", key, line.TransferID)
			}
			seen[key] = true
			return nil
		})
		testenv.NoError(t, err)
		if len(seen) != l.lines {
			t.Errorf("%s: %d lines read, want %d", l.name, len(seen), l.lines)
		}
	}
}
