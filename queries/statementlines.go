package queries

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Every statement line of a ledger at once, for `audit verify`: read
// account by account through ListStatement, each line costs PostgreSQL a
// heap page of its own (an account's lines are spread over the table in
// the order they were written), about 5 µs; read in the table's order, a
// page serves every line on it.

// statementLinesSQL reads every line of ledger $1 (its number $3) up to
// position $2 with its account, in the order of the table's heap: run with
// index scans off (statementLinesTx), which would follow the key (ledger_no
// leads it) and read a heap page a line again, the plan is a sequential
// scan of the table when the ledger holds most of its lines, and a bitmap
// scan of the ledger's pages, in their order, when it holds few (a small
// ledger verified beside a large one does not read the large one's). Each
// line finds its head through the heads' key and the ledger's name, as
// ListStatement finds it by name (LATERAL, kept from being pulled up into
// a join by OFFSET 0: a join could hash the lines, which a fresh table's
// statistics make look few). Columns as statementPageSQL's lines.
const statementLinesSQL = `SELECT h.account, h.scale, h.normal_balance,
		l.position, l.seq, l.posting_index, l.transfer_id, l.kind, l.counter_accounts, l.side, l.amount::text, l.pending,
		l.effective_at, l.recorded_at, COALESCE(l.reference, ''), l.metadata,
		l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text
	FROM movements l
	CROSS JOIN LATERAL (SELECT account, scale, normal_balance FROM movement_heads
		WHERE ledger_no = l.ledger_no AND opened_position = l.account_no AND ledger = $1 OFFSET 0) h
	WHERE l.ledger_no = $3 AND l.position <= $2`

// statementLinesTx is the snapshot the lines are read in, movementSnapshot's,
// with the planner kept off index scans (statementLinesSQL).
var statementLinesTx = pgx.TxOptions{
	BeginQuery: `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_indexscan = off`}

// StatementLines hands fn every statement line of ledger up to position
// to, with its account and its rank among the account's lines at its
// position (seq: ListStatement's order), as ListStatement serves them
// (pending lines included), in no order: not by account, not by position.
// It waits, as a min_position does, until the movements projection has
// applied to, and reads in one snapshot. fn must not keep line.
//
// Errors: as ListStatement's wait for a min_position (an unknown ledger, a
// position past the head, not reached in time); fn's; database errors.
func (s *Service) StatementLines(ctx context.Context, ledger string, to uint64,
	fn func(account string, seq uint32, line *StatementLine) error) error {
	s = s.route()
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return err
	}
	s, err := s.waitFor(ctx, ledger, movementsProjection, to)
	if err != nil {
		return err
	}
	err = pgx.BeginTxFunc(ctx, s.pool, statementLinesTx, func(tx pgx.Tx) error {
		var number int64
		switch err := tx.QueryRow(ctx, `SELECT ledger_no FROM movement_ledgers WHERE ledger = $1`, ledger).Scan(&number); {
		case errors.Is(err, pgx.ErrNoRows):
			return nil // no line written yet
		case err != nil:
			return err
		}
		rows, err := tx.Query(ctx, statementLinesSQL, ledger, int64(to), number)
		if err != nil {
			return err
		}
		defer rows.Close()
		return scanStatementLines(rows, fn)
	})
	if err != nil {
		return fmt.Errorf("statement lines of %s up to %d: %w", ledger, to, err)
	}
	return nil
}

// scanStatementLines hands fn each row of statementLinesSQL.
func scanStatementLines(rows pgx.Rows, fn func(account string, seq uint32, line *StatementLine) error) error {
	var (
		account, normal pgtype.Text
		scale           pgtype.Int2
		columns         lineColumns
	)
	dest := append([]any{&account, &scale, &normal}, columns.targets()...)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		line, err := columns.line(uint8(scale.Int16), normal.String)
		if err != nil {
			return fmt.Errorf("%s: %w", account.String, err)
		}
		if err := fn(account.String, uint32(columns.seq.Int16), &line); err != nil {
			return err
		}
	}
	return rows.Err()
}
