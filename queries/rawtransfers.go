package queries

import (
	"encoding/binary"
	"fmt"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// A transfer's row is read from the rows' raw values, as a statement
// line's is (rawlines.go), not through pgx's Scan of its seventeen columns:
// a page of 100 in 0.40 ms against 0.49, PostgreSQL's time included, with
// 2,349 allocations against 3,312 (BenchmarkTransfersPage).

// The columns of a transfer row (transferCols after the checkpoint), then
// a page's two (listTransfersSQL: a hit, the scan's last).
const (
	trColCheckpoint = iota
	trColID
	trColKind
	trColStatus
	trColPostings
	trColReference
	trColMetadata
	trColEffective
	trColRecorded
	trColPosition
	trColUpdated
	trColPendingID
	trColResolvedBy
	trColReverses
	trColReversedBy
	trColExpires
	trColAlert
	transferColumnsN
)

// transferColumnsRaw are the columns as transferReader.read takes them,
// a page's two last. Read only, as every raw read's column table.
var transferColumnsRaw = [transferColumnsN + 2]pgbin.Column{
	trColCheckpoint:      pgbin.ColInt8,
	trColID:              pgbin.ColText,
	trColKind:            pgbin.ColText,
	trColStatus:          pgbin.ColText,
	trColPostings:        pgbin.ColJSON,
	trColReference:       pgbin.ColText,
	trColMetadata:        pgbin.ColJSONB,
	trColEffective:       pgbin.ColTimestamptz,
	trColRecorded:        pgbin.ColTimestamptz,
	trColPosition:        pgbin.ColInt8,
	trColUpdated:         pgbin.ColInt8,
	trColPendingID:       pgbin.ColText,
	trColResolvedBy:      pgbin.ColText,
	trColReverses:        pgbin.ColText,
	trColReversedBy:      pgbin.ColTextArray,
	trColExpires:         pgbin.ColTimestamptz,
	trColAlert:           pgbin.ColText,
	transferColumnsN:     pgbin.ColBool,
	transferColumnsN + 1: pgbin.ColBool,
}

// transferReader reads transfer rows from raw values. Kinds and statuses
// are few: the last one's string serves until another comes.
type transferReader struct {
	kind, status string
}

// read reads a row of transferColumnsRaw (its first transferColumnsN, or
// all with page) into r, as scanTransferRow scans it: a NULL text is "",
// a NULL array nil, the jsonb columns' texts read in place (valid until
// the next row).
//
// Errors: a value that is not of its column (a NULL checkpoint, a number
// or a time of another size, an infinite time, a malformed array).
func (tr *transferReader) read(v [][]byte, page bool, r *transferRow) error {
	n := transferColumnsN
	if page {
		n += 2
	}
	if len(v) != n || len(v[trColCheckpoint]) != 8 {
		return fmt.Errorf("a transfer row of %d columns, or without its checkpoint", len(v))
	}
	*r = transferRow{checkpoint: int64(binary.BigEndian.Uint64(v[trColCheckpoint])), valid: v[trColID] != nil}
	if page {
		r.hit = len(v[transferColumnsN]) == 1 && v[transferColumnsN][0] != 0
		r.last = len(v[transferColumnsN+1]) == 1 && v[transferColumnsN+1][0] != 0
	}
	if !r.valid {
		return nil
	}
	for _, c := range [...]int{trColPosition, trColUpdated} {
		if len(v[c]) != 8 {
			return fmt.Errorf("transfer %s: column %d of %d bytes (NULL: %v)", v[trColID], c, len(v[c]), v[c] == nil)
		}
	}
	effective, finite := pgbin.FiniteTimestamptz(v[trColEffective])
	recorded, finiteToo := pgbin.FiniteTimestamptz(v[trColRecorded])
	if !finite || !finiteToo {
		return fmt.Errorf("transfer %s: effective_at or recorded_at NULL or infinite", v[trColID])
	}
	if string(v[trColKind]) != tr.kind {
		tr.kind = string(v[trColKind])
	}
	if string(v[trColStatus]) != tr.status {
		tr.status = string(v[trColStatus])
	}
	r.t = Transfer{ID: string(v[trColID]), Kind: tr.kind, Status: tr.status,
		EffectiveAt: effective, RecordedAt: recorded, Position: binary.BigEndian.Uint64(v[trColPosition]),
		UpdatedPosition: binary.BigEndian.Uint64(v[trColUpdated]), Reference: string(v[trColReference]),
		PendingID: string(v[trColPendingID]), ResolvedBy: string(v[trColResolvedBy]), Reverses: string(v[trColReverses]),
		Alert: string(v[trColAlert])}
	if b := v[trColReversedBy]; b != nil {
		by, err := pgbin.TextArrayOf(b)
		if err != nil {
			return fmt.Errorf("transfer %s: reversed_by: %w", r.t.ID, err)
		}
		r.t.ReversedBy = by
	}
	if b := v[trColExpires]; b != nil {
		at, ok := pgbin.FiniteTimestamptz(b)
		if !ok {
			return fmt.Errorf("transfer %s: expires_at of %d bytes or infinite", r.t.ID, len(b))
		}
		r.t.ExpiresAt = at
	}
	r.postings, r.metadata = v[trColPostings], v[trColMetadata]
	return nil
}
