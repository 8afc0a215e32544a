package queries

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ledgerd/ledger/domain"
)

// Limits of statements.
const (
	// StatementLimitMax bounds the lines of one statement page.
	StatementLimitMax = 1000
	// StatementLimitDefault is the page size when none is asked.
	StatementLimitDefault = 100
	// statementCursorLenMax bounds a cursor's text: version, three varints, a
	// fingerprint.
	statementCursorLenMax = 64
	// StatementPositionMax bounds from_position and to_position: past it a
	// position cannot be a log's (nor a cursor's), and it stays clear of
	// PostgreSQL's bigint.
	StatementPositionMax = 1 << 62
)

var (
	// ErrStatementLimit means a page size over StatementLimitMax.
	ErrStatementLimit error = domain.NewInvalid("limit", "limit over 1000", "at most 1000 lines")
	// ErrStatementCursor means a cursor that is malformed or was not made by
	// the same statement query (ledger, account, ranges, basis, pending).
	ErrStatementCursor error = domain.NewInvalid("cursor", "invalid cursor", "not a cursor of this statement")
	// ErrStatementPositionRange means from_position after to_position.
	ErrStatementPositionRange error = domain.NewInvalid("from_position", "from_position after to_position", "after to_position")
	// ErrStatementPositionMax means a from_position or to_position over
	// StatementPositionMax.
	ErrStatementPositionMax error = domain.NewInvalid("from_position", "position over 2^62", "at most 2^62")
	// ErrStatementTimeRange means from_time after to_time.
	ErrStatementTimeRange error = domain.NewInvalid("from_time", "from_time after to_time", "after to_time")
)

// StatementQuery asks for an account's statement.
type StatementQuery struct {
	Ledger, Account string
	// FromPosition and ToPosition bound the lines' positions, inclusive; 0
	// is open.
	FromPosition, ToPosition uint64
	// FromTime and ToTime bound the lines' times, inclusive; zero is open.
	// The time is the recorded time, or the effective time with Effective.
	FromTime, ToTime time.Time
	Effective        bool
	// Cursor is a previous page's NextCursor; empty for the first page.
	Cursor string
	// Limit is the page size, 0..StatementLimitMax; 0 is StatementLimitDefault.
	Limit       int
	MinPosition uint64
	// IncludePending lists the pending movements too (holds placed and
	// released). They move the running available balance either way.
	IncludePending bool
}

// StatementLine is one movement of the account.
type StatementLine struct {
	Position     uint64
	PostingIndex uint32
	// TransferID is the id of the event's transfer, post, void or reversal;
	// for an expiry, the hold's.
	TransferID, Kind string
	CounterAccounts  []string
	// Side is "debit" or "credit": the side of this account the line is on.
	Side string
	// Amount is positive, except a pending line that releases a hold.
	Amount  string
	Pending bool
	// RunningBalance (posted, on the account's normal side) and
	// RunningAvailable are just after this line.
	RunningBalance, RunningAvailable string
	EffectiveAt, RecordedAt          time.Time
	Reference                        string
	Metadata                         map[string]string
}

// Statement is a page of an account's statement.
type Statement struct {
	Account, Asset, Normal string
	Lines                  []StatementLine
	// OpeningBalance is the posted balance just before the range,
	// ClosingBalance at its end: of the whole range, whatever the page.
	OpeningBalance, ClosingBalance string
	// NextCursor is empty on the last page.
	NextCursor string
	// Position is the position the statement reflects: the movements
	// checkpoint when the first page was read. Every page of one statement
	// reflects the same position, so movements arriving meanwhile neither
	// shift nor repeat lines; a new statement shows them.
	Position uint64
}

// statementCursor is where a statement's next page starts: after the line
// (position, seq), with the statement pinned at position pin.
type statementCursor struct {
	pin, position uint64
	seq           uint64
	fingerprint   uint32
}

const statementCursorVersion = 1

func (c statementCursor) encode() string {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+4)
	b = append(b, statementCursorVersion)
	b = binary.AppendUvarint(b, c.pin)
	b = binary.AppendUvarint(b, c.position)
	b = binary.AppendUvarint(b, c.seq)
	b = binary.BigEndian.AppendUint32(b, c.fingerprint)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeStatementCursor reads a cursor made for a query with fingerprint fp.
//
// Errors: ErrStatementCursor.
func decodeStatementCursor(s string, fp uint32) (statementCursor, error) {
	bad := func(why string) (statementCursor, error) {
		return statementCursor{}, fmt.Errorf("%s: %w", why, ErrStatementCursor)
	}
	if len(s) > statementCursorLenMax {
		return bad("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1 || b[0] != statementCursorVersion {
		return bad("not a statement cursor")
	}
	b = b[1:]
	var c statementCursor
	for _, dst := range []*uint64{&c.pin, &c.position, &c.seq} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return bad("truncated")
		}
		*dst, b = v, b[n:]
	}
	if len(b) != 4 {
		return bad("truncated")
	}
	c.fingerprint = binary.BigEndian.Uint32(b)
	switch {
	case c.fingerprint != fp:
		return bad("made for another statement query")
	case c.position == 0 || c.position > c.pin || c.pin > 1<<62 || c.seq > 1<<15:
		return bad("out of range")
	}
	return c, nil
}

// fingerprint identifies the statement a cursor belongs to: a cursor is
// refused with any other ledger, account, range, basis or pending choice.
// The page size may change from page to page.
func (q *StatementQuery) fingerprint() uint32 {
	h := fnv.New32a()
	var b []byte
	b = append(b, q.Ledger...)
	b = append(b, 0)
	b = append(b, q.Account...)
	b = append(b, 0)
	b = binary.AppendUvarint(b, q.FromPosition)
	b = binary.AppendUvarint(b, q.ToPosition)
	for _, t := range []time.Time{q.FromTime, q.ToTime} {
		if t.IsZero() {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.AppendVarint(b, t.UnixNano())
		}
	}
	flags := byte(0)
	if q.Effective {
		flags |= 1
	}
	if q.IncludePending {
		flags |= 2
	}
	b = append(b, flags)
	_, _ = h.Write(b)
	return h.Sum32()
}

// check validates what needs no database.
func (q *StatementQuery) check() (limit int, cursor *statementCursor, err error) {
	switch {
	case q.Limit < 0 || q.Limit > StatementLimitMax:
		return 0, nil, fmt.Errorf("%d: %w", q.Limit, ErrStatementLimit)
	case q.FromPosition > StatementPositionMax || q.ToPosition > StatementPositionMax:
		return 0, nil, fmt.Errorf("%d..%d: %w", q.FromPosition, q.ToPosition, ErrStatementPositionMax)
	case q.FromPosition != 0 && q.ToPosition != 0 && q.FromPosition > q.ToPosition:
		return 0, nil, fmt.Errorf("%d > %d: %w", q.FromPosition, q.ToPosition, ErrStatementPositionRange)
	case !q.FromTime.IsZero() && !q.ToTime.IsZero() && q.FromTime.After(q.ToTime):
		return 0, nil, ErrStatementTimeRange
	}
	limit = q.Limit
	if limit == 0 {
		limit = StatementLimitDefault
	}
	if q.Cursor != "" {
		c, err := decodeStatementCursor(q.Cursor, q.fingerprint())
		if err != nil {
			return 0, nil, err
		}
		cursor = &c
	}
	return limit, cursor, nil
}

// ListStatement returns a page of an account's statement: its movements in
// position order, each with the posted balance (on the account's normal
// side) and the available balance just after it, and the range's opening and
// closing balances.
//
// The range is the intersection of the position range and the time range.
// On recorded time the time range is a position range too (through the
// ledger's clock, see BalancesAsOfTime), and running balances are the
// account's balances after each line. On effective time the statement is
// value-dated: a line is in the range when its position and effective time
// both are; the opening balance counts every posted movement before the range
// in position or in effective time (positions before from_position, or
// effective before from_time), and each running balance is the opening plus
// the range's lines so far, so that the closing is the opening plus every
// line of the range.
//
// Errors: ErrStatementLimit, ErrStatementPositionRange, ErrStatementTimeRange,
// ErrStatementCursor; domain.ErrUnknownLedger; ErrAccountNotFound; ErrNotReached
// when MinPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) ListStatement(ctx context.Context, q StatementQuery) (Statement, error) {
	s = s.route()
	limit, cursor, err := q.check()
	if err != nil {
		return Statement{}, err
	}
	if q.onePass() { // the page in one statement, when no wait is needed
		out, known, err := s.statementPage(ctx, &q, limit, cursor)
		if err != nil {
			return Statement{}, fmt.Errorf("statement of %s in %s: %w", q.Account, q.Ledger, err)
		}
		if known {
			return out, nil
		}
	}
	if err := s.mustExistLedger(ctx, q.Ledger); err != nil {
		return Statement{}, err
	}
	s, err = s.waitFor(ctx, q.Ledger, movementsProjection, q.MinPosition)
	if err != nil {
		return Statement{}, err
	}
	if q.onePass() && q.MinPosition > 0 { // read above before the wait, or unknown
		out, known, err := s.statementPage(ctx, &q, limit, cursor)
		if err != nil {
			return Statement{}, fmt.Errorf("statement of %s in %s: %w", q.Account, q.Ledger, err)
		}
		if known {
			return out, nil
		}
	}
	var out Statement
	err = pgx.BeginTxFunc(ctx, s.pool, movementSnapshot, func(tx pgx.Tx) error {
		r := &statementRead{q: &q, tx: tx, limit: limit, cursor: cursor}
		var err error
		out, err = r.read(ctx)
		return err
	})
	if err != nil {
		return Statement{}, fmt.Errorf("statement of %s in %s: %w", q.Account, q.Ledger, err)
	}
	return out, nil
}

// statementRead reads one page in one snapshot.
type statementRead struct {
	q      *StatementQuery
	tx     pgx.Tx
	limit  int
	cursor *statementCursor

	scale  uint8
	normal string
	// ledgerNo and accountNo key the account's lines (projections 0023):
	// its head's ledger_no and opened_position.
	ledgerNo  int32
	accountNo int64
	// lo..hi is the position range, pin included.
	lo, hi, pin uint64
}

func (r *statementRead) read(ctx context.Context) (Statement, error) {
	q := r.q
	checkpoint, err := movementsCheckpoint(ctx, r.tx, q.Ledger)
	if err != nil {
		return Statement{}, err
	}
	out := Statement{Account: q.Account}
	var scale int16
	err = r.tx.QueryRow(ctx, `SELECT asset, scale, normal_balance, opened_position, ledger_no FROM movement_heads
		WHERE ledger = $1 AND account = $2`, q.Ledger, q.Account).Scan(&out.Asset, &scale, &r.normal, &r.accountNo, &r.ledgerNo)
	if errors.Is(err, pgx.ErrNoRows) {
		return Statement{}, fmt.Errorf("%s at position %d: %w", q.Account, checkpoint, ErrAccountNotFound)
	}
	if err != nil {
		return Statement{}, err
	}
	out.Normal, r.scale = r.normal, uint8(scale)
	if r.pin, err = pinOf(r.cursor, checkpoint); err != nil {
		return Statement{}, err
	}
	out.Position = r.pin
	if err := r.bounds(ctx); err != nil {
		return Statement{}, err
	}
	if q.Effective {
		err = r.valueDated(ctx, &out)
	} else {
		err = r.contiguous(ctx, &out)
	}
	return out, err
}

// bounds sets lo..hi from the position range, the pin and, on recorded time,
// the time range through the ledger's clock.
func (r *statementRead) bounds(ctx context.Context) error {
	q := r.q
	r.lo, r.hi = max(q.FromPosition, 1), r.pin
	if q.ToPosition != 0 {
		r.hi = min(r.hi, q.ToPosition)
	}
	if q.Effective {
		return nil
	}
	if !q.FromTime.IsZero() {
		before, err := clockPosition(ctx, r.tx, q.Ledger, q.FromTime, false)
		if err != nil {
			return err
		}
		r.lo = max(r.lo, before+1)
	}
	if !q.ToTime.IsZero() {
		upTo, err := clockPosition(ctx, r.tx, q.Ledger, q.ToTime, true)
		if err != nil {
			return err
		}
		r.hi = min(r.hi, upTo)
	}
	return nil
}

// after returns the key lines must follow: the cursor's, or none.
func (r *statementRead) after() (int64, int64) {
	if r.cursor == nil {
		return 0, -1
	}
	return int64(r.cursor.position), int64(r.cursor.seq)
}

// totalsAt reads the account's totals after its last line at or before pos.
func (r *statementRead) totalsAt(ctx context.Context, pos uint64) (movementTotals, error) {
	var texts movementTexts
	err := r.tx.QueryRow(ctx, `SELECT debits_posted::text, credits_posted::text, debits_pending::text, credits_pending::text
		FROM movements WHERE ledger_no = $1 AND account_no = $2 AND position <= $3
		ORDER BY position DESC, seq DESC LIMIT 1`, r.ledgerNo, r.accountNo, int64(pos)).Scan(&texts[0], &texts[1], &texts[2], &texts[3])
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return movementTotals{}, err
	}
	return parseMovementTotals(&texts, r.scale, r.normal)
}

// contiguous reads a page of a position range: running balances are the
// totals stored on each line.
func (r *statementRead) contiguous(ctx context.Context, out *Statement) error {
	opening, err := r.totalsAt(ctx, min(r.lo-1, r.hi))
	if err != nil {
		return err
	}
	closing, err := r.totalsAt(ctx, r.hi)
	if err != nil {
		return err
	}
	out.OpeningBalance, out.ClosingBalance = opening.balanceText(), closing.balanceText()
	afterPos, afterSeq := r.after()
	rows, err := r.tx.Query(ctx, `SELECT `+statementLineColumns+`,
			debits_posted::text, credits_posted::text, debits_pending::text, credits_pending::text
		FROM movements
		WHERE ledger_no = $1 AND account_no = $2 AND position BETWEEN $3 AND $4 AND (position, seq) > ($5, $6)
			AND ($7 OR NOT pending)
		ORDER BY position, seq LIMIT $8`,
		r.ledgerNo, r.accountNo, int64(r.lo), int64(r.hi), afterPos, afterSeq, r.q.IncludePending, r.limit+1)
	if err != nil {
		return err
	}
	return r.collect(rows, out, func(texts *movementTexts) (movementTotals, error) {
		return parseMovementTotals(texts, r.scale, r.normal)
	})
}

// valueDated reads a page on effective time: running balances are the
// opening plus the range's lines so far.
func (r *statementRead) valueDated(ctx context.Context, out *Statement) error {
	q := r.q
	opening, err := r.totalsAt(ctx, min(r.lo-1, r.hi))
	if err != nil {
		return err
	}
	// Posted and pending movements of lo..hi effective before the range.
	if !q.FromTime.IsZero() {
		early, err := r.sum(ctx, `effective_at < $5`, q.FromTime)
		if err != nil {
			return err
		}
		opening.add(early)
	}
	within := `($5::timestamptz IS NULL OR effective_at >= $5) AND ($6::timestamptz IS NULL OR effective_at <= $6)`
	from, to := movementNullTime(q.FromTime), movementNullTime(q.ToTime)
	all, err := r.sum(ctx, within, from, to)
	if err != nil {
		return err
	}
	closing := opening
	closing.add(all)
	out.OpeningBalance, out.ClosingBalance = opening.balanceText(), closing.balanceText()

	afterPos, afterSeq := r.after()
	running := opening
	if r.cursor != nil {
		done, err := r.sum(ctx, within+` AND (position, seq) <= ($7, $8)`, from, to, afterPos, afterSeq)
		if err != nil {
			return err
		}
		running.add(done)
	}
	// The window runs over pending lines too, listed or not: they move the
	// available balance.
	rows, err := r.tx.Query(ctx, `SELECT * FROM (
			SELECT `+statementLineColumns+`,
				sum(CASE WHEN side = 'debit' AND NOT pending THEN amount ELSE 0 END) OVER w,
				sum(CASE WHEN side = 'credit' AND NOT pending THEN amount ELSE 0 END) OVER w,
				sum(CASE WHEN side = 'debit' AND pending THEN amount ELSE 0 END) OVER w,
				sum(CASE WHEN side = 'credit' AND pending THEN amount ELSE 0 END) OVER w
			FROM movements
			WHERE ledger_no = $1 AND account_no = $2 AND position BETWEEN $3 AND $4 AND `+within+`
				AND (position, seq) > ($7, $8)
			WINDOW w AS (ORDER BY position, seq ROWS UNBOUNDED PRECEDING)) l
		WHERE $9 OR NOT l.pending
		ORDER BY l.position, l.seq LIMIT $10`,
		r.ledgerNo, r.accountNo, int64(r.lo), int64(r.hi), from, to, afterPos, afterSeq, q.IncludePending, r.limit+1)
	if err != nil {
		return err
	}
	return r.collect(rows, out, func(texts *movementTexts) (movementTotals, error) {
		d, err := parseMovementTotals(texts, r.scale, r.normal)
		if err != nil {
			return movementTotals{}, err
		}
		t := running
		t.add(d)
		return t, nil
	})
}

// sum adds up the four totals' movements of the account's lines in lo..hi
// that match cond (whose arguments start at $5).
func (r *statementRead) sum(ctx context.Context, cond string, args ...any) (movementTotals, error) {
	var texts movementTexts
	err := r.tx.QueryRow(ctx, `SELECT
			sum(amount) FILTER (WHERE side = 'debit' AND NOT pending)::text,
			sum(amount) FILTER (WHERE side = 'credit' AND NOT pending)::text,
			sum(amount) FILTER (WHERE side = 'debit' AND pending)::text,
			sum(amount) FILTER (WHERE side = 'credit' AND pending)::text
		FROM movements
		WHERE ledger_no = $1 AND account_no = $2 AND position BETWEEN $3 AND $4 AND `+cond,
		append([]any{r.ledgerNo, r.accountNo, int64(r.lo), int64(r.hi)}, args...)...).Scan(&texts[0], &texts[1], &texts[2], &texts[3])
	if err != nil {
		return movementTotals{}, err
	}
	return parseMovementTotals(&texts, r.scale, r.normal)
}

func movementNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// statementLineColumns are a line's columns, in collect's order.
const statementLineColumns = `position, seq, posting_index, transfer_id, kind, counter_accounts, side, amount::text, pending,
	effective_at, recorded_at, COALESCE(reference, ''), metadata`

// collect reads up to limit lines (one more says there is a next page),
// each followed by four totals that runningAt turns into the running totals.
func (r *statementRead) collect(rows pgx.Rows, out *Statement, runningAt func(*movementTexts) (movementTotals, error)) error {
	var (
		l            StatementLine
		seq          int16
		pos          int64
		postingIndex int32
		texts        movementTexts
		lastPos      uint64
		lastSeq      int16
		more         bool
	)
	_, err := pgx.ForEachRow(rows, []any{&pos, &seq, &postingIndex, &l.TransferID, &l.Kind, &l.CounterAccounts, &l.Side,
		&l.Amount, &l.Pending, &l.EffectiveAt, &l.RecordedAt, &l.Reference, &l.Metadata, &texts[0], &texts[1], &texts[2], &texts[3]},
		func() error {
			if len(out.Lines) == r.limit {
				more = true
				return nil
			}
			t, err := runningAt(&texts)
			if err != nil {
				return fmt.Errorf("line at %d: %w", pos, err)
			}
			l.Position, l.PostingIndex = uint64(pos), uint32(postingIndex)
			l.EffectiveAt, l.RecordedAt = l.EffectiveAt.UTC(), l.RecordedAt.UTC()
			l.RunningBalance, l.RunningAvailable = t.balanceText(), t.availableText()
			out.Lines = append(out.Lines, l)
			l = StatementLine{}
			lastPos, lastSeq = uint64(pos), seq
			return nil
		})
	if err != nil {
		return err
	}
	if more {
		out.NextCursor = nextCursor(r.q, r.pin, lastPos, lastSeq)
	}
	return nil
}

// pinOf is the position a page reflects: its cursor's pin, or for a first
// page the movements checkpoint.
//
// Errors: ErrStatementCursor when the cursor is pinned after the checkpoint.
func pinOf(cursor *statementCursor, checkpoint uint64) (uint64, error) {
	if cursor == nil {
		return checkpoint, nil
	}
	if cursor.pin > checkpoint {
		return 0, fmt.Errorf("pinned at %d, after the projection's %d: %w", cursor.pin, checkpoint, ErrStatementCursor)
	}
	return cursor.pin, nil
}

// nextCursor is the cursor of the page after the line (pos, seq) of q's
// statement pinned at pin.
func nextCursor(q *StatementQuery, pin, pos uint64, seq int16) string {
	return statementCursor{pin: pin, position: pos, seq: uint64(seq), fingerprint: q.fingerprint()}.encode()
}
