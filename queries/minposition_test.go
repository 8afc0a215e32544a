package queries

import (
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestMinPositionAnswersOnlyOnceReached: GetBalances and ListStatement with a
// min_position read first, and must not answer from a checkpoint behind it.
// The movements checkpoint is at 5 with no line for alice; a line at 8 and
// the checkpoint at 10 come 300 ms into the calls: each answer must hold
// the line and say position 10.
func TestMinPositionAnswersOnlyOnceReached(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	q := New(pool, nil)
	ledger := testenv.Name(t)
	fakeLedger(t, pool, ledger, 10, 10, time.Now())
	checkpoint(t, pool, ledger, "movements", 5, nil)
	exec(t, pool, `INSERT INTO movement_ledgers (ledger) VALUES ($1)`, ledger)
	exec(t, pool, `INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
		SELECT $1, ledger_no, 'alice', 'USD', 2, 'credit', 2 FROM movement_ledgers WHERE ledger = $1`, ledger)

	for _, call := range []struct {
		name string
		read func() (position uint64, got string, err error)
	}{
		{"GetBalances", func() (uint64, string, error) {
			b, err := q.GetBalances(t.Context(), ledger, []string{"alice"}, 10)
			if err != nil || len(b.Balances) != 1 {
				return b.Position, "", err
			}
			return b.Position, b.Balances[0].Balance, nil
		}},
		{"ListStatement", func() (uint64, string, error) {
			s, err := q.ListStatement(t.Context(), StatementQuery{Ledger: ledger, Account: "alice", MinPosition: 10})
			if err != nil || len(s.Lines) != 1 {
				return s.Position, "", err
			}
			return s.Position, s.Lines[0].RunningBalance, nil
		}},
	} {
		exec(t, pool, `DELETE FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $1)`, ledger)
		exec(t, pool, `UPDATE projection_checkpoints SET position = 5 WHERE ledger = $1 AND projection = 'movements'`, ledger)
		done := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_, err := pool.Exec(t.Context(), `INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side,
				pending, kind, transfer_id, counter_accounts, amount, debits_posted, credits_posted, debits_pending,
				credits_pending, effective_at, recorded_at)
				SELECT ledger_no, 2, 8, 0, 0, 'credit', false, 'TransferCommitted', 't1', '{bob}', 5.00, 0.00, 5.00, 0.00, 0.00,
					now(), now() FROM movement_ledgers WHERE ledger = $1`, ledger)
			if err == nil {
				_, err = pool.Exec(t.Context(), `UPDATE projection_checkpoints SET position = 10
					WHERE ledger = $1 AND projection = 'movements'`, ledger)
			}
			done <- err
		}()
		pos, got, err := call.read()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err != nil || pos != 10 || got != "5.00" {
			t.Errorf("%s at min_position 10, the checkpoint at 5 for 300 ms: position %d, balance %q, %v; "+
				"want position 10 and the line's 5.00", call.name, pos, got, err)
		}
	}
}
