package queries

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// Every statement line of a ledger at once, for `audit verify`: read
// account by account through ListStatement, each line costs PostgreSQL a
// heap page of its own (an account's lines are spread over the table in
// the order they were written), about 5 µs; read in the table's order, a
// page serves every line on it.

// statementLinesSQL reads every line of ledger $1 (its number $3) up to
// position $2 with its account, in the order of the table's heap: "+ 0"
// keeps the planner off the key's index (ledger_no leads it), which would
// read a heap page a line again. That reads the whole table, every
// ledger's lines: for a ledger that holds few of them, statementLinesFewSQL
// reads its own (statementLinesOf). Each line finds its head through the
// heads' key and the ledger's name, as ListStatement finds it by name
// (LATERAL, kept from being pulled up into a join by OFFSET 0: a join
// could hash the lines, which a fresh table's statistics make look few).
// Columns as statementPageSQL's lines.
const statementLinesSQL = `SELECT h.account, h.scale, h.normal_balance,
		l.position, l.seq, l.posting_index, l.transfer_id, l.kind, l.counter_accounts, l.side, l.amount::text, l.pending,
		l.effective_at, l.recorded_at, COALESCE(l.reference, ''), l.metadata,
		l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text
	FROM movements l
	CROSS JOIN LATERAL (SELECT account, scale, normal_balance FROM movement_heads
		WHERE ledger_no = l.ledger_no AND opened_position = l.account_no AND ledger = $1 OFFSET 0) h
	WHERE l.ledger_no + 0 = $3 AND l.position <= $2`

// statementLinesFewSQL is statementLinesSQL open to the key's index: for a
// ledger of few lines, a heap page a line costs less than the table.
var statementLinesFewSQL = strings.Replace(statementLinesSQL, "l.ledger_no + 0 = $3", "l.ledger_no = $3", 1)

// statementLinesFewShare: a ledger whose lines may be fewer than this
// share of the table's (about two a position) is read through the key.
// Read through the key, a line costs PostgreSQL about 5 µs (a heap page of
// its own); the table read in its order about 0.8 µs a line.
const statementLinesFewShare = 8

// statementLinesOf is the query that reads the lines of a ledger of to
// positions: through the key when they are a small share of the table's,
// by the planner's count of its rows (a table never counted, -1, is read
// whole, as for a large ledger).
//
// Errors: the database's.
func statementLinesOf(ctx context.Context, tx pgx.Tx, to uint64) (string, error) {
	var rows float64
	if err := tx.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'movements'::regclass`).Scan(&rows); err != nil {
		return "", err
	}
	if 2*float64(to)*statementLinesFewShare < rows {
		return statementLinesFewSQL, nil
	}
	return statementLinesSQL, nil
}

// statementLinesTx is the snapshot the lines are read in, movementSnapshot's,
// with each query planned for its own parameters (a plan cached for a
// large ledger, a scan of the table, would read a small one's lines the
// same way), by one process, not compiled: the rows go to one client at
// the pace it takes them, so parallel workers passing them through a
// gather queue cost PostgreSQL 1.4–1.6 s more CPU for 2M lines at the
// same speed, and JIT compilation a little more.
var statementLinesTx = pgx.TxOptions{BeginQuery: `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
	SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off`}

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
		query, err := statementLinesOf(ctx, tx, to)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, query, ledger, int64(to), number)
		if err != nil {
			return err
		}
		defer rows.Close()
		_, err = readStatementLines(rows, fn)
		return err
	})
	if err != nil {
		return fmt.Errorf("statement lines of %s up to %d: %w", ledger, to, err)
	}
	return nil
}

// statementLinesHead is the columns before a line's in statementLinesSQL:
// the account, its scale and its normal balance.
var statementLinesHead = [...]pgbin.Column{pgbin.ColText, pgbin.ColInt2, pgbin.ColText}

// readStatementLines hands fn each row of statementLinesSQL, and says
// whether it read the rows' raw values (readableLines).
func readStatementLines(rows pgx.Rows, fn func(account string, seq uint32, line *StatementLine) error) (raw bool, _ error) {
	if raw = readableLines(rows.FieldDescriptions(), statementLinesHead[:]...); raw {
		var r lineReader
		// The account and its normal balance repeat, line after line of
		// it in a page of the table: the last ones' strings serve.
		var account, normal string
		for rows.Next() {
			v := rows.RawValues()
			if len(v) != len(statementLinesHead)+lineColumnsN || v[0] == nil || len(v[1]) != 2 || v[2] == nil {
				return true, fmt.Errorf("a row of %d columns, or without its account", len(v))
			}
			if string(v[0]) != account {
				account = string(v[0])
			}
			if string(v[2]) != normal {
				normal = string(v[2])
			}
			line, seq, ok, err := r.read(v[len(statementLinesHead):], uint8(binary.BigEndian.Uint16(v[1])), normal)
			switch {
			case err != nil:
				return true, fmt.Errorf("%s: %w", account, err)
			case !ok:
				return true, fmt.Errorf("%s: a row without its line", account)
			}
			if err := fn(account, uint32(seq), &line); err != nil {
				return true, err
			}
		}
		return true, rows.Err()
	}
	var (
		account, normal pgtype.Text
		scale           pgtype.Int2
		columns         lineColumns
	)
	dest := append([]any{&account, &scale, &normal}, columns.targets()...)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return false, err
		}
		line, err := columns.line(uint8(scale.Int16), normal.String)
		if err != nil {
			return false, fmt.Errorf("%s: %w", account.String, err)
		}
		if err := fn(account.String, uint32(columns.seq.Int16), &line); err != nil {
			return false, err
		}
	}
	return false, rows.Err()
}
