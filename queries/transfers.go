package queries

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/pgbin"
	"github.com/ledgerd/ledger/projections"
)

// Limits of transfer queries.
const (
	// TransferIDsPerRequestMax bounds GetTransfers.
	TransferIDsPerRequestMax = 1000
	// TransfersPageMax bounds a ListTransfers page; TransfersPageDefault is
	// the page of a request that gives no limit.
	TransfersPageMax     = 1000
	TransfersPageDefault = 100
	// TransfersScanMax bounds the transfers one ListTransfers page with an
	// asset filter examines past its cursor: no index serves "a posting in
	// this asset (with an amount in range)" (postings are json), so the
	// page tests at most this many of the rows the other filters select,
	// in position order, and may end short, even empty, with a cursor
	// after the last one it examined.
	TransfersScanMax = 10_000
)

var (
	// ErrTooManyTransferIDs means a GetTransfers request names more than
	// TransferIDsPerRequestMax ids.
	ErrTooManyTransferIDs error = domain.NewInvalid("ids", "too many transfer ids", fmt.Sprintf("want 1..%d transfer ids", TransferIDsPerRequestMax))
	// ErrTransfersPageTooLarge means a limit over TransfersPageMax.
	ErrTransfersPageTooLarge error = domain.NewInvalid("limit", "page limit too large", fmt.Sprintf("at most %d", TransfersPageMax))
	// ErrBadTransfersCursor means a cursor ListTransfers did not write for
	// the same ledger and filters.
	ErrBadTransfersCursor error = domain.NewInvalid("cursor", "malformed cursor", "not a cursor from ListTransfers")
	// ErrTransfersTimeRange means a time range that ends before it starts.
	ErrTransfersTimeRange error = domain.NewInvalid("from_time", "time range ends before it starts", "after to_time")
	// ErrUnknownTransferStatus means a status filter that is no transfer status.
	ErrUnknownTransferStatus error = domain.NewInvalid("status", "unknown transfer status", "")
	// ErrTransfersUnknownAsset means amount bounds in an asset the ledger
	// does not define: they have no scale to be read at.
	ErrTransfersUnknownAsset error = domain.NewInvalid("asset", "unknown asset", "not defined in the ledger")
	// ErrTransfersMinAmount and ErrTransfersMaxAmount mean a bound with
	// more decimals than the asset's scale.
	ErrTransfersMinAmount error = domain.NewInvalid("min_amount", "more decimals than the asset's scale", "")
	ErrTransfersMaxAmount error = domain.NewInvalid("max_amount", "more decimals than the asset's scale", "")
)

// TransferPosting is one posting of a transfer, amounts as decimal strings
// at the asset's scale. Remaining is set on holds (what they still hold),
// Reversed on transfers and posts (how much has been reversed).
type TransferPosting struct {
	Debit     string `json:"debit"`
	Credit    string `json:"credit"`
	Asset     string `json:"asset"`
	Amount    string `json:"amount"`
	Remaining string `json:"remaining"`
	Reversed  string `json:"reversed"`
}

// Transfer is a row of the transfers read model: a transfer, hold, post,
// void or reversal, as it stands now.
type Transfer struct {
	ID string
	// Kind is transfer, pending, post, void or reversal.
	Kind string
	// Status is posted, pending, pending_posted, voided, expired, reversed
	// or partially_reversed.
	Status                  string
	Postings                []TransferPosting
	Reference               string
	Metadata                map[string]string
	EffectiveAt, RecordedAt time.Time
	// Position created the row; UpdatedPosition last changed it.
	Position, UpdatedPosition uint64
	// PendingID is the hold a post or void resolves; ResolvedBy the post or
	// void that resolved a hold.
	PendingID, ResolvedBy string
	// Reverses is the transfer a reversal reverses; ReversedBy a transfer's
	// reversals, in position order.
	Reverses   string
	ReversedBy []string
	// ExpiresAt is a hold's expiry; zero when it has none.
	ExpiresAt time.Time
	// Alert is the alert a rule's hold was placed for; "" for every other
	// transfer.
	Alert string
}

// Transfers is GetTransfers' answer.
type Transfers struct {
	Transfers []Transfer
	// Position is the transfers projection's checkpoint the answer reflects.
	Position uint64
}

// TransferFilter selects transfers; zero fields select all.
type TransferFilter struct {
	// Account: transfers with a posting on it.
	Account   string
	Reference string
	// MetadataKey: transfers whose metadata has the key, and MetadataValue
	// for it when that is not empty.
	MetadataKey, MetadataValue string
	// Status as stored (posted, pending, ...); "" for any.
	Status string
	// From and To bound the time, inclusive; zero is open. The time is
	// effective_at when Effective, else recorded_at.
	From, To  time.Time
	Effective bool
	// Asset: transfers with a posting in it; MinAmount and MaxAmount
	// (decimal text, inclusive, "" for open) bound that posting's amount:
	// one posting in Asset must be within both.
	Asset, MinAmount, MaxAmount string
	// EffectiveFrom/To and RecordedFrom/To bound both times at once, each
	// [from, to); zero is open.
	EffectiveFrom, EffectiveTo, RecordedFrom, RecordedTo time.Time
}

// TransferPage is ListTransfers' answer.
type TransferPage struct {
	Transfers []Transfer
	// NextCursor continues the listing; empty when this page is the last one
	// at Position. Later pages see transfers recorded since, never one twice.
	NextCursor string
	Position   uint64
}

// transferCols are the columns readTransferRows reads after the
// checkpoint, from the alias t.
const transferCols = `t.id, t.kind, t.status, t.postings, t.reference, t.metadata, t.effective_at, t.recorded_at,
	t.position, t.updated_position, t.pending_id, t.resolved_by, t.reverses, t.reversed_by, t.expires_at, t.alert`

// getTransfersSQL reads the transfers of ledger $1 with the ids $2, in
// their order, a row a missing one (without a transfer), and the
// checkpoint on every row.
const getTransfersSQL = `SELECT c.position, ` + transferCols + ` FROM ` + transfersCheckpoint + `
		LEFT JOIN unnest($2::text[]) WITH ORDINALITY AS q(id, n) ON true
		LEFT JOIN LATERAL (SELECT * FROM transfers t WHERE t.ledger_no = ` + transferLedgerNo + ` AND t.id = q.id OFFSET 0) t ON true
		ORDER BY q.n`

// transfersCheckpoint selects the transfers projection's checkpoint as c,
// 0 before its first batch: a row in any case.
const transfersCheckpoint = `(SELECT COALESCE(max(position), 0) AS position FROM projection_checkpoints
	WHERE ledger = $1 AND projection = 'transfers') c`

// GetTransfers returns the transfers with ids (those that exist, in request
// order) once the projection has reached minPosition.
//
// Errors: ErrTooManyTransferIDs; domain.ErrUnknownLedger; ErrNotReached
// when minPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) GetTransfers(ctx context.Context, ledger string, ids []string, minPosition uint64) (Transfers, error) {
	s = s.route()
	if len(ids) > TransferIDsPerRequestMax {
		return Transfers{}, fmt.Errorf("%d ids, at most %d: %w", len(ids), TransferIDsPerRequestMax, ErrTooManyTransferIDs)
	}
	s, err := s.transfersLedger(ctx, ledger, minPosition)
	if err != nil {
		return Transfers{}, err
	}
	// One statement, one snapshot: the rows and the checkpoint agree.
	rows, err := s.pool.Query(ctx, getTransfersSQL, ledger, ids)
	if err != nil {
		return Transfers{}, fmt.Errorf("transfers of %s: %w", ledger, err)
	}
	out := Transfers{Transfers: make([]Transfer, 0, len(ids))}
	out.Position, err = collectTransfers(rows, &out.Transfers)
	if err != nil {
		return Transfers{}, fmt.Errorf("transfers of %s: %w", ledger, err)
	}
	return out, nil
}

// ListTransfers returns up to limit (0: TransfersPageDefault) transfers that
// match f, in position order, after cursor (empty: from the start), once the
// projection has reached minPosition. The status filter sees each page's
// state: a hold resolved between two pages leaves a "pending" listing.
//
// Errors: ErrTransfersPageTooLarge; ErrBadTransfersCursor;
// ErrTransfersTimeRange; domain.ErrUnknownLedger; ErrNotReached when
// minPosition is not reached within WaitMax or ctx; database errors.
func (s *Service) ListTransfers(ctx context.Context, ledger string, f TransferFilter, cursor string, limit int,
	minPosition uint64) (TransferPage, error) {
	s = s.route()
	switch {
	case limit < 0 || limit > TransfersPageMax:
		return TransferPage{}, fmt.Errorf("limit %d, at most %d: %w", limit, TransfersPageMax, ErrTransfersPageTooLarge)
	case limit == 0:
		limit = TransfersPageDefault
	}
	fingerprint := transfersFingerprint(ledger, f)
	after, err := decodeTransfersCursor(cursor, fingerprint)
	if err != nil {
		return TransferPage{}, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return TransferPage{}, fmt.Errorf("from %s to %s: %w", f.From.Format(time.RFC3339Nano), f.To.Format(time.RFC3339Nano),
			ErrTransfersTimeRange)
	}
	if s, err = s.transfersLedger(ctx, ledger, minPosition); err != nil {
		return TransferPage{}, err
	}
	if s, err = s.checkAmountBounds(ctx, ledger, f, minPosition); err != nil {
		return TransferPage{}, err
	}
	if f.Account != "" {
		// An account's transfers are found through its statement lines.
		if s, err = s.waitFor(ctx, ledger, "movements", minPosition); err != nil {
			return TransferPage{}, err
		}
	}
	sql, args, err := listTransfersSQL(ledger, f, after, limit+1, TransfersScanMax)
	if err != nil {
		return TransferPage{}, err
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return TransferPage{}, fmt.Errorf("list transfers of %s: %w", ledger, err)
	}
	out := TransferPage{Transfers: make([]Transfer, 0, limit+1)}
	var boundary uint64
	out.Position, boundary, err = collectTransferPage(rows, &out.Transfers)
	if err != nil {
		return TransferPage{}, fmt.Errorf("list transfers of %s: %w", ledger, err)
	}
	switch {
	case len(out.Transfers) > limit:
		out.Transfers = out.Transfers[:limit]
		out.NextCursor = encodeTransfersCursor(out.Transfers[limit-1].Position, fingerprint)
	case boundary != 0:
		// The scan's budget ran out before the page filled: go on after
		// the last row it examined.
		out.NextCursor = encodeTransfersCursor(boundary, fingerprint)
	}
	return out, nil
}

// checkAmountBounds checks that f's amount bounds have at most the scale of
// f's asset, which the ledger must define by minPosition (the assets are the
// balances projection's: it waits for it).
//
// Errors: ErrTransfersUnknownAsset; ErrTransfersMinAmount;
// ErrTransfersMaxAmount; ErrNotReached; database errors.
func (s *Service) checkAmountBounds(ctx context.Context, ledger string, f TransferFilter, minPosition uint64) (*Service, error) {
	if f.MinAmount == "" && f.MaxAmount == "" {
		return s, nil
	}
	s, err := s.waitFor(ctx, ledger, "balances", minPosition)
	if err != nil {
		return s, err
	}
	var scale int16
	err = s.pool.QueryRow(ctx, `SELECT scale FROM assets WHERE ledger = $1 AND code = $2`, ledger, f.Asset).Scan(&scale)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("asset %q: %w", f.Asset, ErrTransfersUnknownAsset)
	}
	if err != nil {
		return s, fmt.Errorf("scale of %s in %s: %w", f.Asset, ledger, err)
	}
	for _, b := range [...]struct {
		text string
		err  error
	}{{f.MinAmount, ErrTransfersMinAmount}, {f.MaxAmount, ErrTransfersMaxAmount}} {
		if b.text == "" {
			continue
		}
		d, err := domain.ParseDecimal(b.text)
		if err == nil {
			_, err = d.Units(uint8(scale))
		}
		if err != nil {
			return s, fmt.Errorf("%q at %s's scale %d: %v: %w", b.text, f.Asset, scale, err, b.err)
		}
	}
	return s, nil
}

// transfersLedger checks that the ledger exists, then waits for the
// projection to reach minPosition; it returns the Service to read from
// (waitFor).
func (s *Service) transfersLedger(ctx context.Context, ledger string, minPosition uint64) (*Service, error) {
	if err := s.mustExistLedger(ctx, ledger); err != nil {
		return s, err
	}
	return s.waitFor(ctx, ledger, "transfers", minPosition)
}

// transferLedgerNo is the number that keys the transfers of ledger $1
// (projections 0024), read once per statement (a scalar subquery): as a
// constant it lets a scan follow the transfers' indexes.
const transferLedgerNo = `(SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1)`

// transfersAndMovementsCheckpoint is, as c, the lower of the transfers and
// movements projections' checkpoints (0 before either's first batch): an
// account's listing reads both, and shows nothing past either.
const transfersAndMovementsCheckpoint = `(SELECT COALESCE(min(position), 0) AS position FROM (
		SELECT COALESCE(max(position), 0) AS position FROM projection_checkpoints
			WHERE ledger = $1 AND projection = 'transfers'
		UNION ALL SELECT COALESCE(max(position), 0) FROM projection_checkpoints
			WHERE ledger = $1 AND projection = 'movements') p) c`

// listTransfersSQL builds ListTransfers' one statement: the checkpoint and,
// in one snapshot, up to limit matching rows after position after. With an
// account, the scan runs along the account's statement lines (the movements
// primary key) in position order: every transfer row but an expiry's has a
// line at its own position on each account it names, with its id.
//
// With an asset filter, which no index serves, the scan stops after scanMax
// rows and tests the asset and amounts on those (hit); its last row comes
// back even when it is no hit (the last column), so that a short page still
// moves its cursor past what it examined.
//
// The scan's ORDER BY … LIMIT picks the rows; the statement itself has no
// ORDER BY, and collectTransferPage puts them in position order: a sort of
// the joined rows cost PostgreSQL about a seventh of a page's CPU (pages of
// 1,000 through pgbench, alternated, median of ten: 5.9 → 5.1 ms).
func listTransfersSQL(ledger string, f TransferFilter, after uint64, limit, scanMax int) (string, []any, error) {
	args := []any{ledger, int64(after), limit}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	from, order, checkpoint := "transfers t", "t.position", transfersCheckpoint
	where := []string{"t.ledger_no = " + transferLedgerNo, "t.position > $2"}
	distinct := ""
	if f.Account != "" {
		// The account's lines are keyed by its head's numbers (projections
		// 0023), each read once by a scalar subquery: as constants they let
		// the scan follow the primary key in position order and stop at the
		// limit, where a join with the head read and sorted every line of
		// the account (862 ms a page at 100,000 lines, against 2 ms).
		account := arg(f.Account)
		from, order, checkpoint = `movements m JOIN transfers t ON t.ledger_no = `+transferLedgerNo+` AND t.id = m.transfer_id
			AND t.position = m.position`, "m.position", transfersAndMovementsCheckpoint
		where = []string{
			"m.ledger_no = (SELECT h.ledger_no FROM movement_heads h WHERE h.ledger = $1 AND h.account = " + account + ")",
			"m.account_no = (SELECT h.opened_position FROM movement_heads h WHERE h.ledger = $1 AND h.account = " + account + ")",
			"m.position > $2", "m.position <= c.position"}
		// A transfer may have several lines on the account (two postings, a
		// release and a posting): one row each.
		distinct = "DISTINCT ON (m.position) "
	}
	if f.Reference != "" {
		where = append(where, "t.reference = "+arg(f.Reference))
	}
	switch {
	case f.MetadataKey != "" && f.MetadataValue != "":
		kv, err := json.Marshal(map[string]string{f.MetadataKey: f.MetadataValue})
		if err != nil {
			return "", nil, fmt.Errorf("metadata filter: %w", err)
		}
		// metadata <> '{}' is the predicate of the partial index
		// transfers_metadata (migration 0009): with it the planner may use it.
		where = append(where, "t.metadata <> '{}'::jsonb", "t.metadata @> "+arg(string(kv))+"::jsonb")
	case f.MetadataKey != "":
		where = append(where, "t.metadata <> '{}'::jsonb", "t.metadata ? "+arg(f.MetadataKey))
	}
	if f.Status != "" {
		// A literal, not a parameter: the index on statuses leaves 'posted'
		// out (projections 0019), and the planner uses it only when it can
		// prove status <> 'posted', which a generic plan's $n does not let it.
		if !projections.IsTransferStatus(f.Status) {
			return "", nil, fmt.Errorf("status %q: %w", f.Status, ErrUnknownTransferStatus)
		}
		where = append(where, "t.status = '"+f.Status+"'")
	}
	column := "t.recorded_at"
	if f.Effective {
		column = "t.effective_at"
	}
	if !f.From.IsZero() {
		where = append(where, column+" >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, column+" <= "+arg(f.To))
	}
	for _, r := range [...]struct {
		column   string
		from, to time.Time
	}{{"t.effective_at", f.EffectiveFrom, f.EffectiveTo}, {"t.recorded_at", f.RecordedFrom, f.RecordedTo}} {
		if !r.from.IsZero() {
			where = append(where, r.column+" >= "+arg(r.from))
		}
		if !r.to.IsZero() {
			where = append(where, r.column+" < "+arg(r.to))
		}
	}
	// No index on the times (projections 0022): the recorded-time bounds
	// are position bounds too, and effective-time bounds are for the
	// transfers effective near their recorded time; the others are read
	// through their own index.
	recFrom, recTo := f.RecordedFrom, f.RecordedTo
	effFrom, effTo := f.EffectiveFrom, f.EffectiveTo
	if f.Effective {
		effFrom, effTo = latest(effFrom, f.From), earliest(effTo, f.To)
	} else {
		recFrom, recTo = latest(recFrom, f.From), earliest(recTo, f.To)
	}
	where = append(where, positionBounds(order, recFrom, recTo, arg)...)
	var near, far []string // the two arms, when effective time is bounded
	if f.Account == "" && (!effFrom.IsZero() || !effTo.IsZero()) {
		widen := func(t time.Time, d time.Duration) time.Time {
			if t.IsZero() {
				return t
			}
			return t.Add(d)
		}
		near = append(slices.Clip(where), "NOT t.effective_far")
		near = append(near, positionBounds(order, widen(effFrom, -projections.EffectiveNear),
			widen(effTo, projections.EffectiveNear), arg)...)
		far = append(slices.Clip(where), "t.effective_far")
	}
	// limited is the scan: the first matching rows in order, at most n.
	limited := func(n string) string {
		if near == nil {
			return `SELECT ` + distinct + `t.*, ` + order + ` AS k FROM ` + from + `
				WHERE ` + strings.Join(where, " AND ") + `
				ORDER BY ` + order + ` LIMIT ` + n
		}
		arm := func(conds []string) string {
			return `(SELECT t.*, t.position AS k FROM transfers t WHERE ` + strings.Join(conds, " AND ") + `
				ORDER BY t.position LIMIT ` + n + `)`
		}
		return `SELECT * FROM (` + arm(near) + ` UNION ALL ` + arm(far) + `) s ORDER BY s.k LIMIT ` + n
	}
	if f.Asset == "" {
		sql := `SELECT c.position, ` + transferCols + `, true, false FROM ` + checkpoint + `
		LEFT JOIN LATERAL (` + limited("$3") + `) t ON true`
		return sql, args, nil
	}
	posting := []string{"p->>'asset' = " + arg(f.Asset)}
	if f.MinAmount != "" {
		posting = append(posting, "(p->>'amount')::numeric >= "+arg(f.MinAmount)+"::numeric")
	}
	if f.MaxAmount != "" {
		posting = append(posting, "(p->>'amount')::numeric <= "+arg(f.MaxAmount)+"::numeric")
	}
	budget := arg(scanMax)
	sql := `SELECT c.position, ` + transferCols + `, t.hit, t.n = ` + budget + ` FROM ` + checkpoint + `
		LEFT JOIN LATERAL (
			SELECT s.* FROM (
				SELECT u.*, EXISTS (SELECT 1 FROM json_array_elements(u.postings) p
						WHERE ` + strings.Join(posting, " AND ") + `) AS hit,
					row_number() OVER (ORDER BY u.k) AS n
				FROM (` + limited(budget) + `) u
			) s
			WHERE s.hit OR s.n = ` + budget + `
			ORDER BY s.k LIMIT $3) t ON true`
	return sql, args, nil
}

// positionBounds are the conditions on a position column (order) that hold
// for every transfer recorded within [from, to] (zero: open), from the
// ledger's clock (movement_clock): recorded time never goes back with
// position, so the transfers recorded from `from` on come after the last
// clock point before it, and those up to `to` before the first point past
// it. A point the clock does not have yet (the statement lines behind)
// leaves that side open; the rows between are filtered on the time itself.
func positionBounds(order string, from, to time.Time, arg func(any) string) []string {
	var conds []string
	if !from.IsZero() {
		at := arg(from)
		conds = append(conds, order+` > (SELECT coalesce((SELECT k.position FROM movement_clock k
			WHERE k.ledger = $1 AND k.recorded_at < `+at+` AND coalesce(k.max_at, k.recorded_at) < `+at+`
			ORDER BY k.recorded_at DESC LIMIT 1), 0))`)
	}
	if !to.IsZero() {
		at, grainBefore := arg(to), arg(to.Add(-projections.ClockGrain))
		conds = append(conds, order+` <= (SELECT coalesce((SELECT k.position - 1 FROM movement_clock k
			WHERE k.ledger = $1 AND k.recorded_at > `+grainBefore+` AND coalesce(k.max_at, k.recorded_at) > `+at+`
			ORDER BY k.recorded_at LIMIT 1), 9223372036854775807))`)
	}
	return conds
}

// latest and earliest are the tighter of two bounds, zero being open.
func latest(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// collectTransfers appends the rows' transfers to out and returns the
// checkpoint, which every row carries; a row without a transfer is skipped.
func collectTransfers(rows pgx.Rows, out *[]Transfer) (uint64, error) {
	checkpoint, _, _, err := readTransferRows(rows, out, false)
	return checkpoint, err
}

// collectTransferPage is collectTransfers for listTransfersSQL's rows, which
// end with whether each is a hit and whether it is the scan's last: it also
// returns the position of that last row (0 when the scan did not reach its
// bound).
func collectTransferPage(rows pgx.Rows, out *[]Transfer) (checkpoint, boundary uint64, err error) {
	checkpoint, boundary, _, err = readTransferRows(rows, out, true)
	sortByPosition(*out)
	return checkpoint, boundary, err
}

// sortByPosition puts a page's transfers in position order, which
// listTransfersSQL's statement leaves to it (they come in order but for an
// ORDER BY that SQL does not promise: the check costs a pass).
func sortByPosition(ts []Transfer) {
	byPosition := func(a, b Transfer) int { return cmp.Compare(a.Position, b.Position) }
	if !slices.IsSortedFunc(ts, byPosition) {
		slices.SortFunc(ts, byPosition)
	}
}

// transferRow is a transfer row's columns as read, raw or scanned, before
// its JSON is parsed; valid is false on a row without a transfer (its id
// NULL).
type transferRow struct {
	t                  Transfer
	valid, hit, last   bool
	postings, metadata []byte
	checkpoint         int64
}

// readTransferRows appends the rows' transfers to out (a page's hits
// only, with page) and returns the checkpoint, the boundary (page: the
// position of the scan's last row, 0 when it did not reach its bound), and
// whether it read the rows' raw values (transferColumnsRaw) rather than
// through pgx's Scan.
//
// Errors: a value that is not of its column; postings or metadata that
// do not parse; the rows' error.
func readTransferRows(rows pgx.Rows, out *[]Transfer, page bool) (checkpoint, boundary uint64, raw bool, _ error) {
	defer rows.Close()
	cols := transferColumnsRaw[:transferColumnsN]
	if page {
		cols = transferColumnsRaw[:]
	}
	var next func(*transferRow) error
	if raw = pgbin.Readable(rows.FieldDescriptions(), cols...); raw {
		var tr transferReader
		next = func(r *transferRow) error { return tr.read(rows.RawValues(), page, r) }
	} else {
		next = scanTransferRow(rows, page)
	}
	var r transferRow
	for rows.Next() {
		if err := next(&r); err != nil {
			return 0, 0, raw, err
		}
		checkpoint = uint64(r.checkpoint)
		if !r.valid {
			continue
		}
		if page && r.last {
			boundary = r.t.Position
		}
		if page && !r.hit {
			continue
		}
		t := r.t
		var err error
		if t.Postings, err = parsePostings(r.postings); err != nil {
			return 0, 0, raw, fmt.Errorf("transfer %s: postings: %w", t.ID, err)
		}
		if t.Metadata, err = parseMetadata(r.metadata); err != nil {
			return 0, 0, raw, fmt.Errorf("transfer %s: metadata: %w", t.ID, err)
		}
		*out = append(*out, t)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, raw, err
	}
	return checkpoint, boundary, raw, nil
}

// scanTransferRow returns a reader of rows' transfer rows through pgx's
// Scan, into targets that live across the rows: pgtype's nullable values
// scan without reflection (a pointer target costs an allocation through
// reflect a column a row), and the jsonb columns are read in place, before
// the next row.
func scanTransferRow(rows pgx.Rows, page bool) func(*transferRow) error {
	var (
		checkpoint                            int64
		id, kind, status                      pgtype.Text
		reference, pendingID, resolved, revID pgtype.Text
		alert                                 pgtype.Text
		postings, metadata                    pgtype.DriverBytes
		effectiveAt, recordedAt, expiresAt    pgtype.Timestamptz
		position, updated                     pgtype.Int8
		reversedBy                            []string
		hit, last                             pgtype.Bool
	)
	dest := []any{&checkpoint, &id, &kind, &status, &postings, &reference, &metadata, &effectiveAt, &recordedAt,
		&position, &updated, &pendingID, &resolved, &revID, &reversedBy, &expiresAt, &alert}
	if page {
		dest = append(dest, &hit, &last)
	}
	return func(r *transferRow) error {
		reversedBy = nil // each row's its own
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		*r = transferRow{checkpoint: checkpoint, valid: id.Valid, hit: hit.Bool, last: last.Bool, postings: postings,
			metadata: metadata}
		r.t = Transfer{ID: id.String, Kind: kind.String, Status: status.String, EffectiveAt: effectiveAt.Time.UTC(),
			RecordedAt: recordedAt.Time.UTC(), Position: uint64(position.Int64), UpdatedPosition: uint64(updated.Int64),
			Reference: reference.String, PendingID: pendingID.String, ResolvedBy: resolved.String, Reverses: revID.String,
			ReversedBy: reversedBy, Alert: alert.String}
		if expiresAt.Valid {
			r.t.ExpiresAt = expiresAt.Time.UTC()
		}
		return nil
	}
}

// parseMetadata reads a metadata column: nil for none ('{}', or NULL).
func parseMetadata(b []byte) (map[string]string, error) {
	if len(b) == 0 || string(b) == "{}" || string(b) == "null" {
		return nil, nil
	}
	m, err := decodeMetadata(b)
	if err != nil || len(m) == 0 {
		return nil, err
	}
	return m, nil
}

// parsePostings reads the postings column, an array of objects of strings
// as jsonb writes it. Anything scanPostings does not take (an escape in a
// string, a key it does not know, another shape) goes through
// encoding/json, which was a fifth of a transfers page's CPU.
func parsePostings(b []byte) ([]TransferPosting, error) {
	if ps, ok := scanPostings(b); ok {
		return ps, nil
	}
	var ps []TransferPosting
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, err
	}
	return ps, nil
}

// scanPostings reads b as [{"key": "value", ...}, ...] with the keys of
// TransferPosting exactly, strings without escapes, and JSON's white space:
// false for anything else.
func scanPostings(b []byte) ([]TransferPosting, bool) {
	s := jsonText{b: b}
	if !s.eat('[') {
		return nil, false
	}
	ps := make([]TransferPosting, 0, 1)
	if s.eat(']') {
		return ps, s.end()
	}
	for {
		if !s.eat('{') {
			return nil, false
		}
		var p TransferPosting
		for {
			key, ok := s.str()
			if !ok || !s.eat(':') {
				return nil, false
			}
			value, ok := s.str()
			if !ok {
				return nil, false
			}
			switch key {
			case "debit":
				p.Debit = value
			case "credit":
				p.Credit = value
			case "asset":
				p.Asset = value
			case "amount":
				p.Amount = value
			case "remaining":
				p.Remaining = value
			case "reversed":
				p.Reversed = value
			default:
				return nil, false
			}
			if s.eat('}') {
				break
			}
			if !s.eat(',') {
				return nil, false
			}
		}
		ps = append(ps, p)
		if s.eat(']') {
			return ps, s.end()
		}
		if !s.eat(',') {
			return nil, false
		}
	}
}

// jsonText reads JSON text from its start.
type jsonText struct {
	b []byte
	i int
}

func (s *jsonText) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// eat takes c, after white space, if it is next.
func (s *jsonText) eat(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str takes a string of valid UTF-8 without escapes or control
// characters (encoding/json replaces invalid UTF-8).
func (s *jsonText) str() (string, bool) {
	v, ok := s.strBytes()
	return string(v), ok
}

// strBytes is str's bytes, in s's text.
func (s *jsonText) strBytes() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	ascii := true
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(s.b[s.i:j]) {
				return nil, false
			}
			v := s.b[s.i:j]
			s.i = j + 1
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// end says whether only white space is left.
func (s *jsonText) end() bool {
	s.space()
	return s.i == len(s.b)
}

// transfersCursorVersion is the first byte of every cursor: a later format
// can tell its own cursors from these.
const transfersCursorVersion = 1

// transfersCursorLen is a cursor's bytes: version, position, fingerprint.
const transfersCursorLen = 1 + 8 + 4

// encodeTransfersCursor writes the position of a page's last transfer (the
// next page starts after it, whatever was recorded in between) and the
// fingerprint of the listing it belongs to.
func encodeTransfersCursor(position uint64, fingerprint uint32) string {
	var b [transfersCursorLen]byte
	b[0] = transfersCursorVersion
	binary.BigEndian.PutUint64(b[1:], position)
	binary.BigEndian.PutUint32(b[9:], fingerprint)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decodeTransfersCursor reads a cursor of the listing with fingerprint; ""
// is the start.
//
// Errors: ErrBadTransfersCursor, also for another listing's cursor.
func decodeTransfersCursor(cursor string, fingerprint uint32) (uint64, error) {
	if cursor == "" {
		return 0, nil
	}
	// The length first: the decoder skips newlines, and a cursor has one
	// spelling only.
	if len(cursor) != base64.RawURLEncoding.EncodedLen(transfersCursorLen) {
		return 0, fmt.Errorf("cursor %.40q: %w", cursor, ErrBadTransfersCursor)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(b) != transfersCursorLen || b[0] != transfersCursorVersion {
		return 0, fmt.Errorf("cursor %.40q: %w", cursor, ErrBadTransfersCursor)
	}
	pos := binary.BigEndian.Uint64(b[1:])
	if pos > math.MaxInt64 {
		return 0, fmt.Errorf("cursor %.40q: position out of range: %w", cursor, ErrBadTransfersCursor)
	}
	if binary.BigEndian.Uint32(b[9:]) != fingerprint {
		return 0, fmt.Errorf("cursor %.40q: from another listing: %w", cursor, ErrBadTransfersCursor)
	}
	return pos, nil
}

// transfersFingerprint identifies a listing (ledger and filters), so that a
// cursor is refused by any other: it would silently skip or repeat rows.
func transfersFingerprint(ledger string, f TransferFilter) uint32 {
	h := fnv.New32a()
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	fields := []string{ledger, f.Account, f.Reference, f.MetadataKey, f.MetadataValue, f.Status,
		stamp(f.From), stamp(f.To), strconv.FormatBool(f.Effective)}
	if f.Asset != "" || !f.EffectiveFrom.IsZero() || !f.EffectiveTo.IsZero() || !f.RecordedFrom.IsZero() || !f.RecordedTo.IsZero() {
		// Only then: a listing without them keeps the fingerprint (and the
		// cursors) it had before they existed.
		fields = append(fields, f.Asset, f.MinAmount, f.MaxAmount,
			stamp(f.EffectiveFrom), stamp(f.EffectiveTo), stamp(f.RecordedFrom), stamp(f.RecordedTo))
	}
	for _, s := range fields {
		h.Write([]byte(s))
		h.Write([]byte{0}) // no field holds a NUL: the fields cannot run into each other
	}
	return h.Sum32()
}
