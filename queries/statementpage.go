package queries

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// A statement page on positions alone, its first page or the next, is the
// reads' commonest call. It takes one statement: the ledger's and the
// account's heads, the checkpoint, the opening and closing totals and the
// lines, in one snapshot, where the general read (statementRead) takes a
// transaction of five statements and a look-up of the ledger before it:
// eight round trips, each a write and a read on both sides.

// onePass says q is read by statementPage: no time range, on recorded
// positions (the clock's and the value-dated reads need statementRead).
// With a min_position the checkpoint has not reached, the page is read
// again after the wait.
func (q *StatementQuery) onePass() bool {
	return !q.Effective && q.FromTime.IsZero() && q.ToTime.IsZero()
}

// statementPageSQL reads the page. $1 ledger, $2 account, $3 the cursor's
// pin (NULL: the checkpoint), $4 ToPosition (NULL: none), $5 lo, $6 and $7
// the cursor's key, $8 IncludePending, $9 the rows to read. Every row
// carries the heads, the checkpoint and the two totals; a page without
// lines is one row without a line. The lines' ORDER BY … LIMIT picks them;
// the statement has no ORDER BY of its own, and readStatementPage puts
// them in order: a sort of the joined rows cost PostgreSQL about a ninth
// of a page's CPU (pages of 100 through pgbench, alternated, median of
// ten: 1.21 → 1.07 ms). The line past the page, which says there is more,
// is then read whole, to sort it with the rest: a line's parse in Go.
const statementPageSQL = `WITH b AS (
		SELECT lh.position IS NOT NULL AS known, COALESCE(c.position, 0) AS checkpoint,
			h.asset, h.scale, h.normal_balance, h.ledger_no, h.opened_position,
			least(COALESCE($3::bigint, c.position, 0), $4::bigint) AS hi
		FROM (SELECT 1) one
		LEFT JOIN ledger_heads lh ON lh.ledger = $1
		LEFT JOIN projection_checkpoints c ON c.ledger = $1 AND c.projection = 'movements'
		LEFT JOIN movement_heads h ON h.ledger = $1 AND h.account = $2)
	SELECT b.known, b.checkpoint, b.asset, b.scale, b.normal_balance,
		o.debits_posted::text, o.credits_posted::text, o.debits_pending::text, o.credits_pending::text,
		cl.debits_posted::text, cl.credits_posted::text, cl.debits_pending::text, cl.credits_pending::text,
		l.position, l.seq, l.posting_index, l.transfer_id, l.kind, l.counter_accounts, l.side, l.amount::text, l.pending,
		l.effective_at, l.recorded_at, COALESCE(l.reference, ''), l.metadata,
		l.debits_posted::text, l.credits_posted::text, l.debits_pending::text, l.credits_pending::text
	FROM b
	LEFT JOIN LATERAL (SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM movements
		WHERE ledger_no = b.ledger_no AND account_no = b.opened_position AND position <= least($5::bigint - 1, b.hi)
		ORDER BY position DESC, seq DESC LIMIT 1) o ON true
	LEFT JOIN LATERAL (SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM movements
		WHERE ledger_no = b.ledger_no AND account_no = b.opened_position AND position <= b.hi
		ORDER BY position DESC, seq DESC LIMIT 1) cl ON true
	LEFT JOIN LATERAL (SELECT * FROM movements
		WHERE ledger_no = b.ledger_no AND account_no = b.opened_position AND position BETWEEN $5 AND b.hi
			AND (position, seq) > ($6, $7) AND ($8 OR NOT pending)
		ORDER BY position, seq LIMIT $9) l ON true`

// statementPage reads a page of q (onePass) in one statement. known is
// false when the ledger has no head here, or when the checkpoint is before
// q.MinPosition: the caller then waits, and the general read says why a
// ledger is unknown (and asks the primary when s reads a replica).
//
// Errors: ErrAccountNotFound; ErrStatementCursor (pinned after the
// checkpoint); database errors.
func (s *Service) statementPage(ctx context.Context, q *StatementQuery, limit int, cursor *statementCursor) (out Statement, known bool, err error) {
	var pin, to *int64
	afterPos, afterSeq := int64(0), int64(-1)
	if cursor != nil {
		p := int64(cursor.pin)
		pin, afterPos, afterSeq = &p, int64(cursor.position), int64(cursor.seq)
	}
	if q.ToPosition != 0 {
		t := int64(q.ToPosition) // at most StatementPositionMax (check)
		to = &t
	}
	lo := int64(max(q.FromPosition, 1))
	rows, err := s.pool.Query(ctx, statementPageSQL, q.Ledger, q.Account, pin, to, lo, afterPos, afterSeq,
		q.IncludePending, limit+1)
	if err != nil {
		return Statement{}, false, err
	}
	out, known, _, err = readStatementPage(rows, q, limit, cursor)
	return out, known, err
}

// statementPageHead is the columns before a line's in statementPageSQL:
// known, the checkpoint, the asset, the scale, the normal balance and the
// eight totals' texts (statementPageHeadRaw).
const statementPageHead = 13

var statementPageHeadRaw = [statementPageHead]pgbin.Column{pgbin.ColBool, pgbin.ColInt8, pgbin.ColText, pgbin.ColInt2,
	pgbin.ColText, pgbin.ColText, pgbin.ColText, pgbin.ColText, pgbin.ColText, pgbin.ColText, pgbin.ColText, pgbin.ColText,
	pgbin.ColText}

// readStatementPage reads statementPageSQL's rows into the page, and says
// whether it read the lines from the rows' raw values (readableLines).
func readStatementPage(rows pgx.Rows, q *StatementQuery, limit int, cursor *statementCursor) (out Statement, known, raw bool, err error) {
	defer rows.Close()
	// The heads, the checkpoint and the totals repeat on every row: they are
	// scanned from the first only (a nil destination skips a column). The
	// targets are pgtype's nullable values, which scan without reflection;
	// a pointer target costs an allocation through reflect a column a row.
	var (
		checkpoint    int64
		asset, normal pgtype.Text
		scale         pgtype.Int2
		opening       movementTexts
		closing       movementTexts
		line          lineColumns
		reader        lineReader
		pinAt         uint64
		seqs          []int16 // each line's rank at its position
		first         = true
	)
	dest := append([]any{&known, &checkpoint, &asset, &scale, &normal,
		&opening[0], &opening[1], &opening[2], &opening[3], &closing[0], &closing[1], &closing[2], &closing[3]},
		line.targets()...)
	if raw = readableLines(rows.FieldDescriptions(), statementPageHeadRaw[:]...); raw {
		clear(dest[statementPageHead:]) // the lines are read raw, the first row's too
	}
	out = Statement{Account: q.Account}
	for rows.Next() {
		if first || !raw {
			if err := rows.Scan(dest...); err != nil {
				return Statement{}, false, raw, err
			}
		}
		if first {
			first = false
			clear(dest[:statementPageHead])
			if !known || uint64(checkpoint) < q.MinPosition {
				return Statement{}, false, raw, nil
			}
			if !asset.Valid {
				return Statement{}, true, raw, fmt.Errorf("%s at position %d: %w", q.Account, checkpoint, ErrAccountNotFound)
			}
			if pinAt, err = pinOf(cursor, uint64(checkpoint)); err != nil {
				return Statement{}, true, raw, err
			}
			out.Asset, out.Normal, out.Position = asset.String, normal.String, pinAt
			if out.OpeningBalance, out.ClosingBalance, err = openingClosing(&opening, &closing,
				uint8(scale.Int16), normal.String); err != nil {
				return Statement{}, true, raw, err
			}
		}
		var (
			l   StatementLine
			seq int16
			ok  bool
		)
		switch {
		case raw:
			l, seq, ok, err = reader.read(rows.RawValues()[statementPageHead:], uint8(scale.Int16), normal.String)
		case line.pos.Valid:
			ok, seq = true, line.seq.Int16
			l, err = line.line(uint8(scale.Int16), normal.String)
		}
		switch {
		case err != nil:
			return Statement{}, true, raw, err
		case !ok:
			continue // no line in the page
		case len(out.Lines) > limit:
			// The statement reads one line past the page (limit+1).
			return Statement{}, true, raw, fmt.Errorf("%s: more than %d lines for a page of %d: a bug of the query",
				q.Account, limit+1, limit)
		}
		if seqs == nil {
			seqs = make([]int16, 0, limit+1)
		}
		out.Lines = append(out.Lines, l)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return Statement{}, false, raw, err
	}
	sortLines(out.Lines, seqs)
	if len(out.Lines) > limit {
		// A line past the page: there is more.
		out.Lines = out.Lines[:limit]
		out.NextCursor = nextCursor(q, pinAt, out.Lines[limit-1].Position, seqs[limit-1])
	}
	return out, true, raw, nil
}

// sortLines puts a page's lines in their order, by position then rank
// (seqs, one a line), which statementPageSQL leaves to it: they come in
// order but for an ORDER BY that SQL does not promise, so the check most
// often costs a pass.
func sortLines(lines []StatementLine, seqs []int16) {
	if p := (pageLines{lines, seqs}); !sort.IsSorted(p) {
		sort.Sort(p)
	}
}

// pageLines sorts a page's lines and their ranks together.
type pageLines struct {
	lines []StatementLine
	seqs  []int16
}

func (p pageLines) Len() int { return len(p.lines) }

func (p pageLines) Less(i, j int) bool {
	a, b := p.lines[i].Position, p.lines[j].Position
	return a < b || a == b && p.seqs[i] < p.seqs[j]
}

func (p pageLines) Swap(i, j int) {
	p.lines[i], p.lines[j] = p.lines[j], p.lines[i]
	p.seqs[i], p.seqs[j] = p.seqs[j], p.seqs[i]
}

// openingClosing is a range's opening and closing balances from the totals
// after its last line before it and after its last line in it.
func openingClosing(opening, closing *movementTexts, scale uint8, normal string) (string, string, error) {
	o, err := parseMovementTotals(opening, scale, normal)
	if err != nil {
		return "", "", err
	}
	c, err := parseMovementTotals(closing, scale, normal)
	if err != nil {
		return "", "", err
	}
	return o.balanceText(), c.balanceText(), nil
}

// lineColumns are the scan targets of a statement line's columns, as
// statementPageSQL and statementLinesSQL select them: l.position, l.seq,
// l.posting_index, ... the four totals. They are pgtype's nullable values,
// which scan without reflection.
type lineColumns struct {
	pos                                       pgtype.Int8
	seq                                       pgtype.Int2
	postingIndex                              pgtype.Int4
	transferID, kind, side, amount, reference pgtype.Text
	counter                                   []string
	pending                                   pgtype.Bool
	effective, recorded                       pgtype.Timestamptz
	metadata                                  map[string]string
	totals                                    movementTexts
}

// targets are c's targets in the columns' order.
func (c *lineColumns) targets() []any {
	return []any{&c.pos, &c.seq, &c.postingIndex, &c.transferID, &c.kind, &c.counter, &c.side, &c.amount, &c.pending,
		&c.effective, &c.recorded, &c.reference, &c.metadata, &c.totals[0], &c.totals[1], &c.totals[2], &c.totals[3]}
}

// line is the line scanned, of an account at scale with normal balance
// normal. The line keeps the row's counter accounts and metadata: c
// scans the next row into new ones.
//
// Errors: totals that do not parse.
func (c *lineColumns) line(scale uint8, normal string) (StatementLine, error) {
	t, err := parseMovementTotals(&c.totals, scale, normal)
	if err != nil {
		return StatementLine{}, fmt.Errorf("line at %d: %w", c.pos.Int64, err)
	}
	l := StatementLine{Position: uint64(c.pos.Int64), PostingIndex: uint32(c.postingIndex.Int32),
		TransferID: c.transferID.String, Kind: c.kind.String, CounterAccounts: c.counter, Side: c.side.String,
		Amount: c.amount.String, Pending: c.pending.Bool,
		RunningBalance: t.balanceText(), RunningAvailable: t.availableText(),
		EffectiveAt: c.effective.Time.UTC(), RecordedAt: c.recorded.Time.UTC(), Reference: c.reference.String,
		Metadata: c.metadata}
	c.counter, c.metadata = nil, nil
	return l, nil
}
