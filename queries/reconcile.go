package queries

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
)

// Limits of reconciliation queries.
const (
	// ReconPageMax bounds a page of unmatched items.
	ReconPageMax = 1000
	// ReconPageDefault is a page's size when none is given.
	ReconPageDefault = 100
	// ReconMatchesPageMax bounds a page of matches (each up to 128 items).
	ReconMatchesPageMax = 100
	// JournalLinesMax bounds a daily journal answer: narrow the dates or
	// name the asset for more.
	JournalLinesMax = 10000
)

var (
	// ErrNotReconciled means the account has no statement line and no rules.
	ErrNotReconciled error = domain.NewError(domain.KindNotFound, "account not reconciled", "import a statement line or set matching rules first")
	// ErrReconCursor means a page token ListUnmatched did not write for this
	// listing.
	ErrReconCursor error = domain.NewInvalid("page_token", "invalid page token", "not a page token of this listing")
	// ErrDateRange means a period that ends before it starts.
	ErrDateRange error = domain.NewInvalid("from_date", "from_date after to_date", "after to_date")
	// ErrTooManyJournalLines means the journal has more than JournalLinesMax
	// lines in the range.
	ErrTooManyJournalLines error = domain.NewInvalid("to_date", "too many journal lines", "narrow the dates or name the asset")
)

const reconProjection = "reconciliation"

// Period is a range of dates, both included; a zero bound is open.
type Period struct{ From, To time.Time }

func (p Period) check() error {
	if !p.From.IsZero() && !p.To.IsZero() && p.From.After(p.To) {
		return fmt.Errorf("%s after %s: %w", p.From.Format(domain.DateLayout), p.To.Format(domain.DateLayout), ErrDateRange)
	}
	return nil
}

func (p Period) args() (from, to *time.Time) {
	if !p.From.IsZero() {
		from = &p.From
	}
	if !p.To.IsZero() {
		to = &p.To
	}
	return from, to
}

// Reconciliation is GetReconciliation's answer; amounts are decimal strings
// in the account's scale, signed so that positive raises the balance.
type Reconciliation struct {
	Account, Asset                               string
	Matches, MatchedLines, MatchedMovements      uint64
	UnmatchedLines, UnmatchedMovements           uint64
	UnmatchedLinesSum, UnmatchedMovementsSum     string
	ExternalBalance, LedgerBalance, Difference   string
	UnmatchedLinesToEnd, UnmatchedMovementsToEnd string
	MatchedDifference                            string
	MatchesByRule                                map[string]uint64
	Position                                     uint64
}

// GetReconciliation returns an account's reconciliation for period, once the
// projection has reached minPosition.
//
// Errors: ErrDateRange; domain.ErrUnknownLedger; ErrNotReached; ErrNotReconciled;
// database errors.
func (s *Service) GetReconciliation(ctx context.Context, ledger, account string, period Period, minPosition uint64) (Reconciliation, error) {
	s = s.route()
	if err := period.check(); err != nil {
		return Reconciliation{}, err
	}
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return Reconciliation{}, err
	}
	s, err := s.waitFor(ctx, ledger, reconProjection, minPosition)
	if err != nil {
		return Reconciliation{}, err
	}
	r := Reconciliation{Account: account, MatchesByRule: map[string]uint64{}}
	from, to := period.args()
	err = s.snapshot(ctx, func(tx pgx.Tx) error {
		var scale int16
		err := tx.QueryRow(ctx, `SELECT c.position, a.asset, a.scale
			FROM recon_accounts a LEFT JOIN projection_checkpoints c ON c.ledger = a.ledger AND c.projection = $3
			WHERE a.ledger = $1 AND a.account = $2`, ledger, account, reconProjection).Scan(&r.Position, &r.Asset, &scale)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s: %w", account, ErrNotReconciled)
		}
		if err != nil {
			return err
		}
		// Per side: in the period, matched and unmatched; up to its end, all
		// and unmatched.
		var sums [2][4]string
		var counts [2][2]uint64
		for side, q := range [2]string{
			`SELECT count(*) FILTER (WHERE match_id IS NOT NULL AND ($3::date IS NULL OR value_date >= $3) AND ($4::date IS NULL OR value_date <= $4)),
				count(*) FILTER (WHERE match_id IS NULL AND ($3::date IS NULL OR value_date >= $3) AND ($4::date IS NULL OR value_date <= $4)),
				coalesce(sum(amount) FILTER (WHERE match_id IS NULL AND ($3::date IS NULL OR value_date >= $3) AND ($4::date IS NULL OR value_date <= $4)), 0)::text,
				coalesce(sum(amount) FILTER (WHERE $4::date IS NULL OR value_date <= $4), 0)::text,
				coalesce(sum(amount) FILTER (WHERE match_id IS NULL AND ($4::date IS NULL OR value_date <= $4)), 0)::text
			FROM recon_lines WHERE ledger = $1 AND account = $2`,
			`SELECT count(*) FILTER (WHERE match_id IS NOT NULL AND ($3::date IS NULL OR effective_date >= $3) AND ($4::date IS NULL OR effective_date <= $4)),
				count(*) FILTER (WHERE match_id IS NULL AND ($3::date IS NULL OR effective_date >= $3) AND ($4::date IS NULL OR effective_date <= $4)),
				coalesce(sum(amount) FILTER (WHERE match_id IS NULL AND ($3::date IS NULL OR effective_date >= $3) AND ($4::date IS NULL OR effective_date <= $4)), 0)::text,
				coalesce(sum(amount) FILTER (WHERE $4::date IS NULL OR effective_date <= $4), 0)::text,
				coalesce(sum(amount) FILTER (WHERE match_id IS NULL AND ($4::date IS NULL OR effective_date <= $4)), 0)::text
			FROM recon_movements WHERE ledger = $1 AND account = $2`,
		} {
			if err := tx.QueryRow(ctx, q, ledger, account, from, to).Scan(&counts[side][0], &counts[side][1],
				&sums[side][0], &sums[side][1], &sums[side][2]); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT rule, count(*) FROM recon_matches WHERE ledger = $1 AND account = $2
			AND ($3::date IS NULL OR day >= $3) AND ($4::date IS NULL OR day <= $4) GROUP BY rule`, ledger, account, from, to)
		if err != nil {
			return err
		}
		for rows.Next() {
			var rule string
			var n uint64
			if err := rows.Scan(&rule, &n); err != nil {
				return err
			}
			r.MatchesByRule[rule] = n
			r.Matches += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return r.fill(uint8(scale), counts, sums)
	})
	if err != nil {
		return Reconciliation{}, fmt.Errorf("reconciliation of %s: %w", account, err)
	}
	return r, nil
}

// fill computes the answer's amounts from the sums per side: in the period
// unmatched, to the end all, to the end unmatched.
func (r *Reconciliation) fill(scale uint8, counts [2][2]uint64, sums [2][4]string) error {
	var u [2][3]domain.Units
	for side := range sums {
		for i := 0; i < 3; i++ {
			v, err := unitsOfNumeric(sums[side][i], scale)
			if err != nil {
				return err
			}
			u[side][i] = v
		}
	}
	const (
		line, movement               = 0, 1
		unmatchedIn, allToEnd, unEnd = 0, 1, 2
	)
	r.MatchedLines, r.UnmatchedLines = counts[line][0], counts[line][1]
	r.MatchedMovements, r.UnmatchedMovements = counts[movement][0], counts[movement][1]
	r.UnmatchedLinesSum = u[line][unmatchedIn].Format(scale)
	r.UnmatchedMovementsSum = u[movement][unmatchedIn].Format(scale)
	r.ExternalBalance = u[line][allToEnd].Format(scale)
	r.LedgerBalance = u[movement][allToEnd].Format(scale)
	r.Difference = u[line][allToEnd].Sub(u[movement][allToEnd]).Format(scale)
	r.UnmatchedLinesToEnd = u[line][unEnd].Format(scale)
	r.UnmatchedMovementsToEnd = u[movement][unEnd].Format(scale)
	matchedLines := u[line][allToEnd].Sub(u[line][unEnd])
	matchedMovements := u[movement][allToEnd].Sub(u[movement][unEnd])
	r.MatchedDifference = matchedLines.Sub(matchedMovements).Format(scale)
	return nil
}

// unitsOfNumeric reads a NUMERIC's text in minor units of scale.
func unitsOfNumeric(s string, scale uint8) (domain.Units, error) {
	d, err := domain.ParseDecimal(s)
	if err != nil {
		return domain.Units{}, err
	}
	return d.Units(scale)
}

// snapshot runs fn in a read-only transaction that sees one snapshot.
func (s *Service) snapshot(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// ReconSide says what ListUnmatched lists.
type ReconSide int

const (
	ReconLines ReconSide = iota + 1
	ReconMovements
	ReconMatches
)

// ReconItem is an external line or a ledger movement.
type ReconItem struct {
	Line                   bool
	Source, ExternalID     string
	TransferID             string
	PostingIndex           uint32
	Amount, Date           string
	Reference, Description string
	Position               uint64
	ManualOnly             bool
	MatchID                string
}

// ReconMatch is a match with its items.
type ReconMatch struct {
	ID, Rule, Reason, Difference string
	Position                     uint64
	Items                        []ReconItem
}

// ReconPage is a page of ListUnmatched.
type ReconPage struct {
	Items    []ReconItem
	Matches  []ReconMatch
	Next     string
	Position uint64
}

// ListUnmatched lists an account's unmatched lines, unmatched movements, or
// matches in period, in position order, after token ("" from the start).
//
// Errors: ErrDateRange; ErrReconCursor; domain.ErrUnknownLedger; ErrNotReached;
// ErrNotReconciled; database errors.
func (s *Service) ListUnmatched(ctx context.Context, ledger, account string, side ReconSide, period Period, limit int,
	token string, minPosition uint64) (ReconPage, error) {
	s = s.route()
	if err := period.check(); err != nil {
		return ReconPage{}, err
	}
	afterPos, afterIx, err := decodeReconToken(token, side)
	if err != nil {
		return ReconPage{}, err
	}
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return ReconPage{}, err
	}
	s, err = s.waitFor(ctx, ledger, reconProjection, minPosition)
	if err != nil {
		return ReconPage{}, err
	}
	var page ReconPage
	from, to := period.args()
	err = s.snapshot(ctx, func(tx pgx.Tx) error {
		var scale int16
		err := tx.QueryRow(ctx, `SELECT coalesce(c.position, 0), a.scale
			FROM recon_accounts a LEFT JOIN projection_checkpoints c ON c.ledger = a.ledger AND c.projection = $3
			WHERE a.ledger = $1 AND a.account = $2`, ledger, account, reconProjection).Scan(&page.Position, &scale)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s: %w", account, ErrNotReconciled)
		}
		if err != nil {
			return err
		}
		switch side {
		case ReconLines:
			page.Items, err = reconItems(ctx, tx, `SELECT true, source, external_id, '', 0, amount::text, value_date, reference, description,
					position, manual_only, '' FROM recon_lines
				WHERE ledger = $1 AND account = $2 AND match_id IS NULL AND ($3::date IS NULL OR value_date >= $3)
				AND ($4::date IS NULL OR value_date <= $4) AND (position, 0) > ($5, $6)
				ORDER BY position LIMIT $7`, ledger, account, from, to, int64(afterPos), int32(afterIx), limit+1)
		case ReconMovements:
			page.Items, err = reconItems(ctx, tx, `SELECT false, '', '', transfer_id, posting_index, amount::text, effective_date, reference, '',
					position, manual_only, '' FROM recon_movements
				WHERE ledger = $1 AND account = $2 AND match_id IS NULL AND ($3::date IS NULL OR effective_date >= $3)
				AND ($4::date IS NULL OR effective_date <= $4) AND (position, posting_index) > ($5, $6)
				ORDER BY position, posting_index LIMIT $7`, ledger, account, from, to, int64(afterPos), int32(afterIx), limit+1)
		default:
			page.Matches, err = reconMatches(ctx, tx, ledger, account, from, to, afterPos, afterIx, limit+1)
		}
		return err
	})
	if err != nil {
		return ReconPage{}, fmt.Errorf("unmatched of %s: %w", account, err)
	}
	switch {
	case len(page.Items) > limit:
		page.Items = page.Items[:limit]
		last := page.Items[limit-1]
		page.Next = encodeReconToken(side, last.Position, int64(last.PostingIndex))
	case len(page.Matches) > limit:
		page.Matches = page.Matches[:limit]
		last := page.Matches[limit-1]
		page.Next = encodeReconToken(side, last.Position, matchOrdinal(last.ID))
	}
	return page, nil
}

func reconItems(ctx context.Context, tx pgx.Tx, q string, args ...any) ([]ReconItem, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ReconItem
	for rows.Next() {
		var it ReconItem
		var date time.Time
		var position int64
		var ix int32
		if err := rows.Scan(&it.Line, &it.Source, &it.ExternalID, &it.TransferID, &ix, &it.Amount, &date, &it.Reference,
			&it.Description, &position, &it.ManualOnly, &it.MatchID); err != nil {
			return nil, err
		}
		it.PostingIndex, it.Position, it.Date = uint32(ix), uint64(position), date.Format(domain.DateLayout)
		out = append(out, it)
	}
	return out, rows.Err()
}

// reconMatches lists matches by (position, ordinal): the ordinal of '#p.n'
// is n, of a manual match (one per position) 0.
func reconMatches(ctx context.Context, tx pgx.Tx, ledger, account string, from, to *time.Time, afterPos uint64, afterIx int64, n int) ([]ReconMatch, error) {
	rows, err := tx.Query(ctx, `SELECT match_id, rule, reason, difference::text, position FROM recon_matches
		WHERE ledger = $1 AND account = $2 AND ($3::date IS NULL OR day >= $3) AND ($4::date IS NULL OR day <= $4)
		AND (position, CASE WHEN match_id LIKE '#%' THEN split_part(match_id, '.', 2)::bigint ELSE 0 END) > ($5, $6)
		ORDER BY position, CASE WHEN match_id LIKE '#%' THEN split_part(match_id, '.', 2)::bigint ELSE 0 END LIMIT $7`,
		ledger, account, from, to, int64(afterPos), afterIx, n)
	if err != nil {
		return nil, err
	}
	var out []ReconMatch
	index := map[string]int{}
	for rows.Next() {
		var m ReconMatch
		var position int64
		if err := rows.Scan(&m.ID, &m.Rule, &m.Reason, &m.Difference, &position); err != nil {
			rows.Close()
			return nil, err
		}
		m.Position = uint64(position)
		index[m.ID] = len(out)
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]string, 0, len(out))
	for _, m := range out {
		ids = append(ids, m.ID)
	}
	items, err := reconItems(ctx, tx, `SELECT true, source, external_id, '', 0, amount::text, value_date, reference, description,
			position, manual_only, match_id FROM recon_lines WHERE ledger = $1 AND account = $2 AND match_id = ANY($3)
		UNION ALL
		SELECT false, '', '', transfer_id, posting_index, amount::text, effective_date, reference, '',
			position, manual_only, match_id FROM recon_movements WHERE ledger = $1 AND account = $2 AND match_id = ANY($3)
		ORDER BY 1 DESC, 10, 5`, ledger, account, ids)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		i := index[it.MatchID]
		out[i].Items = append(out[i].Items, it)
	}
	return out, nil
}

// matchOrdinal is n of an automatic match id '#p.n', 0 for a manual one.
func matchOrdinal(id string) int64 {
	var p, n int64
	if _, err := fmt.Sscanf(id, "#%d.%d", &p, &n); err != nil {
		return 0
	}
	return n
}

// reconTokenLen is a page token's bytes: side, position, ordinal.
const reconTokenLen = 1 + 8 + 8

func encodeReconToken(side ReconSide, position uint64, ordinal int64) string {
	var b [reconTokenLen]byte
	b[0] = byte(side)
	binary.BigEndian.PutUint64(b[1:], position)
	binary.BigEndian.PutUint64(b[9:], uint64(ordinal))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decodeReconToken reads a page token of side; "" is the start.
//
// Errors: ErrReconCursor, also for another side's token.
func decodeReconToken(token string, side ReconSide) (uint64, int64, error) {
	if token == "" {
		return 0, -1, nil
	}
	if len(token) != base64.RawURLEncoding.EncodedLen(reconTokenLen) {
		return 0, 0, fmt.Errorf("%.40q: %w", token, ErrReconCursor)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || b[0] != byte(side) {
		return 0, 0, fmt.Errorf("%.40q: %w", token, ErrReconCursor)
	}
	pos, ord := binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:])
	if pos > math.MaxInt64 || ord > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%.40q: out of range: %w", token, ErrReconCursor)
	}
	return pos, int64(ord), nil
}

// JournalLine is one asset's posted postings on one day, or over the days
// of an answer (Date empty).
type JournalLine struct {
	Asset, Date, Amount string
	Postings            uint64
}

// DailyJournal is GetDailyJournal's answer.
type DailyJournal struct {
	Lines, Totals []JournalLine
	Position      uint64
}

// GetDailyJournal returns the daily journal of asset ("" every asset) in
// period, once the projection has reached minPosition.
//
// Errors: ErrDateRange; domain.ErrUnknownLedger; ErrNotReached;
// ErrTooManyJournalLines; database errors.
func (s *Service) GetDailyJournal(ctx context.Context, ledger, asset string, period Period, minPosition uint64) (DailyJournal, error) {
	s = s.route()
	if err := period.check(); err != nil {
		return DailyJournal{}, err
	}
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return DailyJournal{}, err
	}
	s, err := s.waitFor(ctx, ledger, reconProjection, minPosition)
	if err != nil {
		return DailyJournal{}, err
	}
	var j DailyJournal
	from, to := period.args()
	err = s.snapshot(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
			ledger, reconProjection).Scan(&j.Position); err != nil {
			return err
		}
		where := `ledger = $1 AND ($2 = '' OR asset = $2) AND ($3::date IS NULL OR day >= $3) AND ($4::date IS NULL OR day <= $4)`
		rows, err := tx.Query(ctx, `SELECT asset, day, postings, amount::text FROM recon_journal WHERE `+where+
			` ORDER BY asset, day LIMIT $5`, ledger, asset, from, to, JournalLinesMax+1)
		if err != nil {
			return err
		}
		for rows.Next() {
			var l JournalLine
			var day time.Time
			var n int64
			if err := rows.Scan(&l.Asset, &day, &n, &l.Amount); err != nil {
				rows.Close()
				return err
			}
			l.Date, l.Postings = day.Format(domain.DateLayout), uint64(n)
			j.Lines = append(j.Lines, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(j.Lines) > JournalLinesMax {
			return fmt.Errorf("more than %d lines: %w", JournalLinesMax, ErrTooManyJournalLines)
		}
		rows, err = tx.Query(ctx, `SELECT asset, sum(postings), sum(amount)::text FROM recon_journal WHERE `+where+
			` GROUP BY asset ORDER BY asset`, ledger, asset, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l JournalLine
			var n int64
			if err := rows.Scan(&l.Asset, &n, &l.Amount); err != nil {
				return err
			}
			l.Postings = uint64(n)
			j.Totals = append(j.Totals, l)
		}
		return rows.Err()
	})
	if err != nil {
		return DailyJournal{}, fmt.Errorf("daily journal: %w", err)
	}
	return j, nil
}
