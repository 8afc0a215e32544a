package queries

import (
	"reflect"
	"testing"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestPagesPutTheirRowsInOrder: a statement page and a transfers page
// read from their statements' rows in the reverse order (the statements
// have no ORDER BY of their own) are the pages read from the rows as they
// come: the same lines and transfers in the same order, the same cursor.
func TestPagesPutTheirRowsInOrder(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	ledger := testenv.Name(t)
	const accounts, events = 4, 300
	writeLineShapes(t, pool, ledger, accounts, events)
	const far, transfers = int64(5_000_000_000), 300
	transfersLedger := ledger + "-t"
	writeTransferShapes(t, pool, transfersLedger, transfers, far)

	// reversed reads sql's rows by its column n, descending: the line's or
	// the transfer's position, then the line's rank.
	reversed := func(sql, by string) string { return `SELECT * FROM (` + sql + `) x ORDER BY ` + by }

	q := &StatementQuery{Ledger: ledger, Account: "acc-1", IncludePending: true}
	const limit, pagesMax = 10, 100
	var (
		cursor *statementCursor
		lines  int
		prev   *StatementLine
	)
	for pages := 0; ; pages++ {
		if pages == pagesMax {
			t.Fatalf("%d pages of acc-1's lines and more", pages)
		}
		var pin *int64
		afterPos, afterSeq := int64(0), int64(-1)
		if cursor != nil {
			p := int64(cursor.pin)
			pin, afterPos, afterSeq = &p, int64(cursor.position), int64(cursor.seq)
		}
		page := func(sql string) Statement {
			t.Helper()
			rows, err := pool.Query(t.Context(), sql, q.Ledger, q.Account, pin, (*int64)(nil), int64(1), afterPos,
				afterSeq, true, limit+1)
			testenv.NoError(t, err)
			out, known, _, err := readStatementPage(rows, q, limit, cursor)
			testenv.NoError(t, err)
			if !known {
				t.Fatalf("page %d: not known", pages)
			}
			return out
		}
		inOrder := page(statementPageSQL)
		backwards := page(reversed(statementPageSQL, "14 DESC NULLS LAST, 15 DESC"))
		if !reflect.DeepEqual(inOrder, backwards) {
			t.Fatalf("page %d read from reversed rows:\n%+v\nwant\n%+v", pages, backwards, inOrder)
		}
		// In order within the page and after the page before (the cursor
		// is taken after the sort; the count below finds a line read twice
		// or skipped at a page's end).
		for i := range inOrder.Lines {
			l := &inOrder.Lines[i]
			if prev != nil && l.Position < prev.Position {
				t.Fatalf("page %d: line %d at %d after one at %d", pages, i, l.Position, prev.Position)
			}
			prev = l
		}
		lines += len(inOrder.Lines)
		if inOrder.NextCursor == "" {
			if pages < 3 {
				t.Fatalf("%d pages of acc-1's lines, want several", pages+1)
			}
			break
		}
		c, err := decodeStatementCursor(inOrder.NextCursor, q.fingerprint())
		testenv.NoError(t, err)
		cursor = &c
	}
	var want int
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM movements m JOIN movement_heads h
		ON m.ledger_no = h.ledger_no AND m.account_no = h.opened_position WHERE h.ledger = $1 AND h.account = 'acc-1'`,
		ledger).Scan(&want))
	if lines != want {
		t.Fatalf("%d lines in the pages of acc-1, %d in the table", lines, want)
	}

	for _, f := range []TransferFilter{{}, {Asset: "EUR", MinAmount: "7", MaxAmount: "8"}} {
		after := uint64(0)
		for range transfers {
			sql, args, err := listTransfersSQL(transfersLedger, f, after, 11, 20)
			testenv.NoError(t, err)
			type page struct {
				transfers            []Transfer
				checkpoint, boundary uint64
			}
			read := func(sql string) (p page) {
				t.Helper()
				rows, err := pool.Query(t.Context(), sql, args...)
				testenv.NoError(t, err)
				p.checkpoint, p.boundary, err = collectTransferPage(rows, &p.transfers)
				testenv.NoError(t, err)
				return p
			}
			inOrder, backwards := read(sql), read(reversed(sql, "10 DESC NULLS LAST"))
			if !reflect.DeepEqual(inOrder, backwards) {
				t.Fatalf("%+v: the page after %d read from reversed rows:\n%+v\nwant\n%+v", f, after, backwards, inOrder)
			}
			switch {
			case len(inOrder.transfers) == 11:
				after = inOrder.transfers[9].Position
				continue
			case inOrder.boundary != 0:
				after = inOrder.boundary
				continue
			}
			break
		}
	}
}

// TestSortLinesKeepsRanks: lines sorted by position and rank carry their
// ranks with them.
func TestSortLinesKeepsRanks(t *testing.T) {
	lines := []StatementLine{{Position: 9, TransferID: "c"}, {Position: 7, TransferID: "b1"}, {Position: 7, TransferID: "b0"},
		{Position: 3, TransferID: "a"}}
	seqs := []int16{0, 1, 0, 0}
	sortLines(lines, seqs)
	var got []string
	for _, l := range lines {
		got = append(got, l.TransferID)
	}
	if want := []string{"a", "b0", "b1", "c"}; !reflect.DeepEqual(got, want) || !reflect.DeepEqual(seqs, []int16{0, 0, 1, 0}) {
		t.Fatalf("sorted: %v, ranks %v; want %v, ranks [0 0 1 0]", got, seqs, want)
	}
}
