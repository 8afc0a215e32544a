package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Ledger numbers. The statement lines and the transfers are keyed by a
// number their projector's table of numbers (movement_ledgers,
// transfer_ledgers: a ledger column, so a rebuild's swap renames the
// shadow's row) gives each ledger key, not by its name (projections 0023,
// 0024): an integer key costs PostgreSQL about half a text one, and a swap
// moves the number, not the rows.

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

// deleteNumbered deletes the rows of table rows under the number the table
// numbers gives the ledger key (a rowDropper's dropRows).
func deleteNumbered(ctx context.Context, tx pgx.Tx, rows, numbers, key string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{rows}.Sanitize()+` WHERE ledger_no =
		(SELECT ledger_no FROM `+pgx.Identifier{numbers}.Sanitize()+` WHERE ledger = $1)`, key); err != nil {
		return fmt.Errorf("delete the %s of %s: %w", rows, key, err)
	}
	return nil
}
