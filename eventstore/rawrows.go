package eventstore

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// The columns every read of records selects, in order: position, type,
// schema_version, recorded_at, command_id, payload, prev_hash, hash.
const (
	colPosition = iota
	colType
	colSchemaVersion
	colRecordedAt
	colCommandID
	colPayload
	colPrevHash
	colHash
	recordColumns
)

// rawColumn is the type and the wire format readRaw reads column i in:
// pgx asks PostgreSQL for the numbers, the time and the hashes in binary
// and for the texts (the JSON payload among them) as text. A result of
// other types or formats (another query mode: everything in text) is
// scanned by pgx instead.
func rawColumn(i int) (oid uint32, format int16) {
	switch i {
	case colPosition:
		return pgbin.OIDInt8, pgx.BinaryFormatCode
	case colType, colCommandID:
		return pgbin.OIDText, pgx.TextFormatCode
	case colSchemaVersion:
		return pgbin.OIDInt2, pgx.BinaryFormatCode
	case colRecordedAt:
		return pgbin.OIDTimestamptz, pgx.BinaryFormatCode
	case colPayload:
		return pgbin.OIDJSON, pgx.TextFormatCode
	}
	return pgbin.OIDBytea, pgx.BinaryFormatCode // the hashes
}

// readableRaw reports whether rows' columns are those rawColumn names.
func readableRaw(fds []pgconn.FieldDescription) bool {
	if len(fds) != recordColumns {
		return false
	}
	for i := range fds {
		if oid, format := rawColumn(i); fds[i].DataTypeOID != oid || fds[i].Format != format {
			return false
		}
	}
	return true
}

// The payloads of a read are copied into slabs: one allocation for many
// records instead of one a record (a read's records are used, and
// dropped, together). The first slab is small, as most reads are (the
// relay's and a projector's at the head find a record or a few), and each
// next one twice the last, up to slabMax.
const (
	slabMin = 4 << 10
	slabMax = 256 << 10
)

// rawReader reads records from rows' raw values (readableRaw): pgx's Scan
// of the same eight columns took a third of ledgerd's time serving the
// log (a plan looked up a value, the time through its codec, a string and
// a payload allocated a row).
type rawReader struct {
	ledger   string
	lastType string
	slab     []byte
}

// read fills r from raw, one row of the records' columns.
func (rr *rawReader) read(raw [][]byte, r *Record) error {
	if len(raw) != recordColumns {
		return fmt.Errorf("%d columns, want %d", len(raw), recordColumns)
	}
	for i, want := range [recordColumns]int{colPosition: 8, colSchemaVersion: 2, colRecordedAt: 8,
		colPrevHash: HashSize, colHash: HashSize} {
		if (want > 0 && len(raw[i]) != want) || raw[i] == nil {
			return fmt.Errorf("column %d: %d bytes (NULL: %v)", i, len(raw[i]), raw[i] == nil)
		}
	}
	pos := int64(binary.BigEndian.Uint64(raw[colPosition]))
	us := int64(binary.BigEndian.Uint64(raw[colRecordedAt]))
	if pos < 0 || us == math.MaxInt64 || us == math.MinInt64 {
		return fmt.Errorf("position %d, recorded_at %d: out of range", pos, us)
	}
	// Event types are few and a read's records mostly of one: the last
	// one's string serves until another comes.
	if string(raw[colType]) != rr.lastType {
		rr.lastType = string(raw[colType])
	}
	*r = Record{Ledger: rr.ledger, Position: uint64(pos), Type: rr.lastType,
		SchemaVersion: int(int16(binary.BigEndian.Uint16(raw[colSchemaVersion]))),
		RecordedAt:    pgbin.TimeOfTimestamptz(us), CommandID: string(raw[colCommandID]),
		Payload: rr.payload(raw[colPayload])}
	copy(r.PrevHash[:], raw[colPrevHash])
	copy(r.Hash[:], raw[colHash])
	return nil
}

// payload is a copy of p, in a slab unless it is a large one, with no room
// past its end: an append to it cannot reach another payload.
func (rr *rawReader) payload(p []byte) []byte {
	if len(p) > slabMax/4 {
		c := make([]byte, len(p))
		copy(c, p)
		return c
	}
	if cap(rr.slab)-len(rr.slab) < len(p) {
		rr.slab = make([]byte, 0, min(max(2*cap(rr.slab), slabMin, len(p)), slabMax))
	}
	start := len(rr.slab)
	rr.slab = append(rr.slab, p...)
	return rr.slab[start:len(rr.slab):len(rr.slab)]
}
