// Package pgbin writes values in PostgreSQL's binary wire format: the
// fields of a binary COPY and one-dimensional arrays, each value preceded by
// its length. The projectors' COPY (projections/copybin.go) and the
// writer's append arrays (eventstore/appendargs.go) build their bytes with
// it, straight from their values, instead of through pgx's per-value encode
// plans (docs/perf.md, session 12). The log's and the statement lines'
// reads (eventstore/rawrows.go, queries/rawlines.go) read their times and
// arrays back with it.
package pgbin

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Type OIDs: the elements of the arrays written here, the arrays', and the
// columns read raw (eventstore/rawrows.go, queries/rawlines.go).
const (
	OIDBool        = 16
	OIDBytea       = 17
	OIDInt8        = 20
	OIDInt2        = 21
	OIDInt4        = 23
	OIDText        = 25
	OIDJSON        = 114
	OIDJSONB       = 3802
	OIDTimestamptz = 1184
	OIDJSONArray   = 199
	OIDByteaArray  = 1001
	OIDInt2Array   = 1005
	OIDTextArray   = 1009
	OIDTimeArray   = 1185
)

// CopyHeader starts a binary COPY: the signature, the flags and the length
// of the header extension (both zero). CopyTrailer ends it; each row between
// is its field count (RowStart) and its fields.
const (
	CopyHeader  = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	CopyTrailer = "\xff\xff"
)

// RowStart appends the start of a binary COPY row of n fields.
func RowStart(b []byte, n int) []byte { return binary.BigEndian.AppendUint16(b, uint16(n)) }

// microsFromUnixToY2K is how far PostgreSQL's epoch, 2000-01-01 UTC, is
// from Unix's, in microseconds.
const microsFromUnixToY2K = 946_684_800 * 1_000_000

// Null appends a NULL value (length -1).
func Null(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 0xffffffff) }

// Text appends s, length first (text, or json, whose binary form is its text).
func Text(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Bytes appends v, length first (bytea, json).
func Bytes(b []byte, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// Int2 appends an int2.
func Int2(b []byte, v int16) []byte {
	b = binary.BigEndian.AppendUint32(b, 2)
	return binary.BigEndian.AppendUint16(b, uint16(v))
}

// Int4 appends an int4.
func Int4(b []byte, v int32) []byte {
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

// Int8 appends an int8.
func Int8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// Bool appends a bool.
func Bool(b []byte, v bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Timestamptz appends t to the microsecond, truncated, as pgx does.
func Timestamptz(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	us := t.Unix()*1_000_000 + int64(t.Nanosecond())/1000
	return binary.BigEndian.AppendUint64(b, uint64(us-microsFromUnixToY2K))
}

// TimeOfTimestamptz is the UTC time of a timestamptz's binary value, us
// microseconds after PostgreSQL's epoch, whatever PostgreSQL holds: adding
// the epoch to us first would overflow past the year 294,247, below
// PostgreSQL's last. The infinities (the int64's ends) are the caller's to
// refuse.
func TimeOfTimestamptz(us int64) time.Time {
	sec, frac := us/1_000_000, us%1_000_000
	if frac < 0 {
		sec, frac = sec-1, frac+1_000_000
	}
	return time.Unix(sec+microsFromUnixToY2K/1_000_000, frac*1000).UTC()
}

// Open starts a value whose bytes the caller appends after it; Close, given
// what Open returned, writes their length before them.
func Open(b []byte) ([]byte, int) { return append(b, 0, 0, 0, 0), len(b) }

// Close ends the value Open started at at.
func Close(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// ArrayHeader appends the header of a one-dimensional array of n elements
// of type elem, without NULLs; the n elements follow. An empty array has no
// dimension.
func ArrayHeader(b []byte, elem uint32, n int) []byte {
	if n == 0 {
		b = binary.BigEndian.AppendUint32(b, 0) // no dimensions
		b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
		return binary.BigEndian.AppendUint32(b, elem)
	}
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, elem)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return binary.BigEndian.AppendUint32(b, 1) // lower bound
}

// TextArrayOf reads a one-dimensional text[]'s binary value into strings
// (an empty array, of no dimension, into an empty slice), as pgx scans it
// into a []string.
//
// Errors: a value that is not one (truncated, of more dimensions or
// another element type, a NULL element, a bound past its bytes).
func TextArrayOf(b []byte) ([]string, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("array of %d bytes", len(b))
	}
	ndim, elem := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[8:])
	switch {
	case elem != OIDText:
		return nil, fmt.Errorf("array of type %d, not text", elem)
	case ndim == 0 && len(b) == 12:
		return []string{}, nil
	case ndim != 1 || len(b) < 20:
		return nil, fmt.Errorf("array of %d dimensions in %d bytes, not one", ndim, len(b))
	}
	n := binary.BigEndian.Uint32(b[12:])
	if uint64(n)*4 > uint64(len(b)-20) {
		return nil, fmt.Errorf("array of %d elements in %d bytes", n, len(b))
	}
	out := make([]string, n)
	rest := b[20:]
	for i := range out {
		if len(rest) < 4 {
			return nil, fmt.Errorf("array element %d: truncated", i)
		}
		size := binary.BigEndian.Uint32(rest)
		if size == 0xffffffff {
			return nil, fmt.Errorf("array element %d: NULL", i)
		}
		if uint64(size) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("array element %d: %d bytes, %d left", i, size, len(rest)-4)
		}
		out[i] = string(rest[4 : 4+size])
		rest = rest[4+size:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("array: %d bytes past its elements", len(rest))
	}
	return out, nil
}

// Wire formats of a result column, as pgx names them.
const (
	TextFormat   int16 = 0
	BinaryFormat int16 = 1
)

// Column is a result column's type and the wire format a raw read takes
// it in: pgx asks PostgreSQL for numbers, times and arrays in binary and
// for texts (JSON among them) as text.
type Column struct {
	OID    uint32
	Format int16
}

// The columns raw reads take, by type: numbers, times, booleans and
// arrays in binary, texts and JSON as text.
var (
	ColBool        = Column{OID: OIDBool, Format: BinaryFormat}
	ColInt2        = Column{OID: OIDInt2, Format: BinaryFormat}
	ColInt4        = Column{OID: OIDInt4, Format: BinaryFormat}
	ColInt8        = Column{OID: OIDInt8, Format: BinaryFormat}
	ColTimestamptz = Column{OID: OIDTimestamptz, Format: BinaryFormat}
	ColBytea       = Column{OID: OIDBytea, Format: BinaryFormat}
	ColTextArray   = Column{OID: OIDTextArray, Format: BinaryFormat}
	ColText        = Column{OID: OIDText, Format: TextFormat}
	ColJSON        = Column{OID: OIDJSON, Format: TextFormat}
	ColJSONB       = Column{OID: OIDJSONB, Format: TextFormat}
)

// Readable says a result's columns are cols, in order: a result of other
// types or formats (another query mode sends everything as text) is for
// pgx's Scan, not a raw read.
func Readable(fds []pgconn.FieldDescription, cols ...Column) bool {
	if len(fds) != len(cols) {
		return false
	}
	for i, fd := range fds {
		if fd.DataTypeOID != cols[i].OID || fd.Format != cols[i].Format {
			return false
		}
	}
	return true
}

// FiniteTimestamptz is the time of a timestamptz's 8-byte binary value;
// false for another length or an infinity (the int64's ends), which no
// time.Time holds.
func FiniteTimestamptz(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, false
	}
	return TimeOfTimestamptz(us), true
}
