package eventstore

import (
	"context"
	"fmt"
)

// PastHead returns a ledger's head row position, and the lowest position
// and number of its events past that head. The writer moves the head in
// every append's transaction, so a row past it was written around the
// writer (and blocks the ledger: its next append collides with it). It
// reads the index of (ledger, position) from the head on: the rows past it,
// normally none.
//
// Errors: the database's.
func (s *Store) PastHead(ctx context.Context, ledger string) (head, first, n uint64, err error) {
	var h, f, c int64
	err = s.pool.QueryRow(ctx, `SELECT coalesce(h.position, 0), coalesce(min(e.position), 0), count(e.position)
		FROM (SELECT $1::text AS ledger) l
		LEFT JOIN ledger_heads h ON h.ledger = l.ledger
		LEFT JOIN events e ON e.ledger = l.ledger AND e.position > coalesce(h.position, 0)
		GROUP BY h.position`, ledger).Scan(&h, &f, &c)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("rows past the head of %s: %w", ledger, err)
	}
	return uint64(h), uint64(f), uint64(c), nil
}
