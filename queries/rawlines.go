package queries

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
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

// lineRawColumn is the type and the wire format a line's column i is read
// raw in.
func lineRawColumn(i int) (oid uint32, format int16) {
	switch i {
	case lineColPosition:
		return pgbin.OIDInt8, pgx.BinaryFormatCode
	case lineColSeq:
		return pgbin.OIDInt2, pgx.BinaryFormatCode
	case lineColPostingIndex:
		return pgbin.OIDInt4, pgx.BinaryFormatCode
	case lineColCounter:
		return pgbin.OIDTextArray, pgx.BinaryFormatCode
	case lineColPending:
		return pgbin.OIDBool, pgx.BinaryFormatCode
	case lineColEffective, lineColRecorded:
		return pgbin.OIDTimestamptz, pgx.BinaryFormatCode
	case lineColMetadata:
		return pgbin.OIDJSONB, pgx.TextFormatCode
	}
	return pgbin.OIDText, pgx.TextFormatCode
}

// readableLines says the line's columns, from at on, are ones lineReader
// reads.
func readableLines(fds []pgconn.FieldDescription, at int) bool {
	if len(fds) != at+lineColumnsN {
		return false
	}
	for i, fd := range fds[at:] {
		if oid, format := lineRawColumn(i); fd.DataTypeOID != oid || fd.Format != format {
			return false
		}
	}
	return true
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
	for i, size := range [lineColumnsN]int{lineColPosition: 8, lineColSeq: 2, lineColPostingIndex: 4, lineColPending: 1,
		lineColEffective: 8, lineColRecorded: 8} {
		if v := raw[i]; (size > 0 && len(v) != size) || (v == nil && i < lineColMetadata) {
			return StatementLine{}, 0, false, fmt.Errorf("line column %d: %d bytes (NULL: %v)", i, len(v), v == nil)
		}
	}
	pos := int64(binary.BigEndian.Uint64(raw[lineColPosition]))
	effective := int64(binary.BigEndian.Uint64(raw[lineColEffective]))
	recorded := int64(binary.BigEndian.Uint64(raw[lineColRecorded]))
	for _, us := range []int64{effective, recorded} {
		if us == math.MaxInt64 || us == math.MinInt64 {
			return StatementLine{}, 0, false, fmt.Errorf("line at %d: an infinite time", pos)
		}
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
		if err := json.Unmarshal(v, &metadata); err != nil {
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
		EffectiveAt: pgbin.TimeOfTimestamptz(effective), RecordedAt: pgbin.TimeOfTimestamptz(recorded),
		Reference: string(raw[lineColReference]), Metadata: metadata}
	return l, int16(binary.BigEndian.Uint16(raw[lineColSeq])), true, nil
}
