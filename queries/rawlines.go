package queries

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// A statement line's columns are read from the rows' raw values, as the
// log's records are (eventstore/rawrows.go), not through pgx's Scan, which
// took a plan a value and a codec a time and an array: 1.2 of the 2.6 s
// ledgerd spent serving a verify's 2M lines. The counter accounts come in
// binary, the totals and the metadata as text.

// The columns of a line, in lineColumns.targets' order.
const (
	lineColPosition = iota
	lineColSeq
	lineColPostingIndex
	lineColTransferID
	lineColKind
	lineColCounter
	lineColSide
	lineColAmount
	lineColPending
	lineColEffective
	lineColRecorded
	lineColReference
	lineColMetadata
	lineColTotals // the four totals' texts
	lineColumnsN  = lineColTotals + 4
)

// lineColumnsRaw are a line's columns as lineReader takes them
// (pgbin.Column). Read only, as every raw read's column table.
var lineColumnsRaw = [lineColumnsN]pgbin.Column{
	lineColPosition:     pgbin.ColInt8,
	lineColSeq:          pgbin.ColInt2,
	lineColPostingIndex: pgbin.ColInt4,
	lineColTransferID:   pgbin.ColText,
	lineColKind:         pgbin.ColText,
	lineColCounter:      pgbin.ColTextArray,
	lineColSide:         pgbin.ColText,
	lineColAmount:       pgbin.ColText,
	lineColPending:      pgbin.ColBool,
	lineColEffective:    pgbin.ColTimestamptz,
	lineColRecorded:     pgbin.ColTimestamptz,
	lineColReference:    pgbin.ColText,
	lineColMetadata:     pgbin.ColJSONB,
	lineColTotals:       pgbin.ColText,
	lineColTotals + 1:   pgbin.ColText,
	lineColTotals + 2:   pgbin.ColText,
	lineColTotals + 3:   pgbin.ColText,
}

// readableLines says a result's columns are head's, then a line's: rows
// lineReader reads.
func readableLines(fds []pgconn.FieldDescription, head ...pgbin.Column) bool {
	return len(fds) == len(head)+lineColumnsN && pgbin.Readable(fds[:len(head)], head...) &&
		pgbin.Readable(fds[len(head):], lineColumnsRaw[:]...)
}

// lineReader reads lines from raw values (readableLines). Kinds and sides
// are few: the last one's string serves until another comes.
type lineReader struct {
	kind, side string
}

// read returns the line in raw (a line's columns, NULL when the row has
// none: ok false) of an account at scale with normal balance normal, and
// its seq, as lineColumns.line does from the same row scanned.
//
// Errors: a value that is not of its column (a length, a NULL where the
// table allows none), totals or metadata that do not parse.
func (r *lineReader) read(raw [][]byte, scale uint8, normal string) (l StatementLine, seq int16, ok bool, err error) {
	if len(raw) != lineColumnsN {
		return StatementLine{}, 0, false, fmt.Errorf("%d columns of a line, want %d", len(raw), lineColumnsN)
	}
	if raw[lineColPosition] == nil {
		return StatementLine{}, 0, false, nil // no line in the row
	}
	// The columns before the metadata are NOT NULL in the table (the
	// reference through COALESCE): a NULL there, or a number of another
	// size, is not a line.
	for i, size := range [lineColMetadata]int{lineColPosition: 8, lineColSeq: 2, lineColPostingIndex: 4, lineColPending: 1,
		lineColEffective: 8, lineColRecorded: 8} {
		if v := raw[i]; (size > 0 && len(v) != size) || v == nil {
			return StatementLine{}, 0, false, fmt.Errorf("line column %d: %d bytes (NULL: %v)", i, len(v), v == nil)
		}
	}
	pos := int64(binary.BigEndian.Uint64(raw[lineColPosition]))
	effective, finite := pgbin.FiniteTimestamptz(raw[lineColEffective])
	recorded, finiteToo := pgbin.FiniteTimestamptz(raw[lineColRecorded])
	if !finite || !finiteToo {
		return StatementLine{}, 0, false, fmt.Errorf("line at %d: an infinite time", pos)
	}
	var texts movementTexts
	for i := range texts {
		if v := raw[lineColTotals+i]; v != nil {
			texts[i].String, texts[i].Valid = string(v), true
		}
	}
	t, err := parseMovementTotals(&texts, scale, normal)
	if err != nil {
		return StatementLine{}, 0, false, fmt.Errorf("line at %d: %w", pos, err)
	}
	counter, err := pgbin.TextArrayOf(raw[lineColCounter])
	if err != nil {
		return StatementLine{}, 0, false, fmt.Errorf("line at %d: counter accounts: %w", pos, err)
	}
	var metadata map[string]string
	if v := raw[lineColMetadata]; v != nil {
		if metadata, err = decodeMetadata(v); err != nil {
			return StatementLine{}, 0, false, fmt.Errorf("line at %d: metadata: %w", pos, err)
		}
	}
	if string(raw[lineColKind]) != r.kind {
		r.kind = string(raw[lineColKind])
	}
	if string(raw[lineColSide]) != r.side {
		r.side = string(raw[lineColSide])
	}
	l = StatementLine{Position: uint64(pos), PostingIndex: uint32(int32(binary.BigEndian.Uint32(raw[lineColPostingIndex]))),
		TransferID: string(raw[lineColTransferID]), Kind: r.kind, CounterAccounts: counter, Side: r.side,
		Amount: string(raw[lineColAmount]), Pending: raw[lineColPending][0] != 0,
		RunningBalance: t.balanceText(), RunningAvailable: t.availableText(),
		EffectiveAt: effective, RecordedAt: recorded,
		Reference: string(raw[lineColReference]), Metadata: metadata}
	return l, int16(binary.BigEndian.Uint16(raw[lineColSeq])), true, nil
}
