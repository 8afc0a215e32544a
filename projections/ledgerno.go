package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ledger numbers. The statement lines and the transfers are keyed by a
// number their projector's table of numbers (movement_ledgers,
// transfer_ledgers: a ledger column, so a rebuild's swap renames the
// shadow's row) gives each ledger key, not by its name (projections 0023,
// 0024): an integer key costs PostgreSQL about half a text one, and a swap
// moves the number, not the rows. The number a swap replaces is retired,
// its rows deleted after the swap (SweepRetired).

// ledgerNo returns the number the table numbers gives the ledger key,
// numbering the key on its first batch.
func ledgerNo(ctx context.Context, tx pgx.Tx, numbers, key string) (int32, error) {
	table := pgx.Identifier{numbers}.Sanitize()
	var no int32
	err := tx.QueryRow(ctx, `SELECT ledger_no FROM `+table+` WHERE ledger = $1`, key).Scan(&no)
	if errors.Is(err, pgx.ErrNoRows) {
		// Concurrent first batches (two runners of one key) agree on the
		// row: the loser's insert updates it.
		err = tx.QueryRow(ctx, `INSERT INTO `+table+` (ledger) VALUES ($1)
			ON CONFLICT (ledger) DO UPDATE SET ledger = excluded.ledger RETURNING ledger_no`, key).Scan(&no)
	}
	if err != nil {
		return 0, fmt.Errorf("the number of %s in %s: %w", key, numbers, err)
	}
	return no, nil
}

// RetiredPrefix starts the key a retired number's row carries in its table
// of numbers: "~" is not allowed in a ledger name, so it is no ledger's,
// and the number is unique, so two retired rows never clash. Until swept,
// the views by ledger that join a table of numbers (transfer_rows) show
// the rows under that key.
const RetiredPrefix = "~retired:"

// NumberedTable is a read-model table keyed by a ledger key's number
// (Rows) and its table of numbers.
type NumberedTable struct{ Rows, Numbers string }

// numbered lists the NumberedTables.
var numbered = [...]NumberedTable{
	{"movements", "movement_ledgers"},
	{"transfers", "transfer_ledgers"},
}

// NumberedTables lists the read-model tables keyed by a ledger key's number.
func NumberedTables() []NumberedTable { return slices.Clone(numbered[:]) }

// retireNumber retires the number the table numbers gives the ledger key (a
// rowDropper's dropRows): its row is renamed RetiredPrefix and the number,
// so the key has no number (its next batch takes a new one, or a swap
// renames a shadow's to it) and no query finds the rows by the key.
// SweepRetired deletes them after the transaction: deleting a million
// transfers within a rebuild's swap held the live checkpoint locked for
// two seconds (docs/perf.md, "Session 24").
func retireNumber(ctx context.Context, tx pgx.Tx, numbers, key string) error {
	if _, err := tx.Exec(ctx, `UPDATE `+pgx.Identifier{numbers}.Sanitize()+`
		SET ledger = $2 || ledger_no WHERE ledger = $1`, key, RetiredPrefix); err != nil {
		return fmt.Errorf("retire the number of %s in %s: %w", key, numbers, err)
	}
	return nil
}

// SweepRetired deletes the rows of every retired number (retireNumber),
// then the number's row, one transaction a number, and returns how many
// rows it deleted. Interrupted, it leaves the rest to the next sweep; a
// number another sweep holds is left to it. (Deleting in chunks of 20,000
// rows took twice as long: each chunk's scan stepped over the rows the
// chunks before it had deleted.)
//
// Errors: ctx's; the database's, each failing number's joined (the others
// are swept).
func SweepRetired(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var deleted int64
	var errs []error
	for _, t := range numbered {
		rows, numbers := pgx.Identifier{t.Rows}.Sanitize(), pgx.Identifier{t.Numbers}.Sanitize()
		var nos []int32
		r, err := pool.Query(ctx, `SELECT ledger_no FROM `+numbers+` WHERE starts_with(ledger, $1) ORDER BY ledger_no`, RetiredPrefix)
		if err == nil {
			nos, err = pgx.CollectRows(r, pgx.RowTo[int32])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("retired numbers of %s: %w", t.Rows, err))
			continue
		}
		for _, no := range nos {
			var n int64
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				// Another sweep's (another process's, a rebuild's) is left
				// to it: waiting on its row locks would only repeat its work.
				tag, err := tx.Exec(ctx, `SELECT FROM `+numbers+` WHERE ledger_no = $1 AND starts_with(ledger, $2)
					FOR UPDATE SKIP LOCKED`, no, RetiredPrefix)
				if err != nil || tag.RowsAffected() == 0 {
					return err
				}
				tag, err = tx.Exec(ctx, `DELETE FROM `+rows+` WHERE ledger_no = $1`, no)
				if err != nil {
					return err
				}
				n = tag.RowsAffected()
				_, err = tx.Exec(ctx, `DELETE FROM `+numbers+` WHERE ledger_no = $1 AND starts_with(ledger, $2)`, no, RetiredPrefix)
				return err
			})
			if err != nil {
				if ctx.Err() != nil {
					return deleted, ctx.Err()
				}
				errs = append(errs, fmt.Errorf("sweep retired number %d of %s: %w", no, t.Rows, err))
				continue
			}
			deleted += n
		}
	}
	return deleted, errors.Join(errs...)
}
