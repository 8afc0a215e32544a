package eventstore

import (
	"encoding/binary"
	"fmt"

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

// recordColumnsRaw are the records' columns as a raw read takes them
// (pgbin.Column): the numbers, the time and the hashes in binary, the
// texts (the JSON payload among them) as text.
var recordColumnsRaw = [recordColumns]pgbin.Column{
	colPosition:      pgbin.ColInt8,
	colType:          pgbin.ColText,
	colSchemaVersion: pgbin.ColInt2,
	colRecordedAt:    pgbin.ColTimestamptz,
	colCommandID:     pgbin.ColText,
	colPayload:       pgbin.ColJSON,
	colPrevHash:      pgbin.ColBytea,
	colHash:          pgbin.ColBytea,
}

// readableRaw says rows of these columns are read raw (rawReader).
func readableRaw(fds []pgconn.FieldDescription) bool {
	return pgbin.Readable(fds, recordColumnsRaw[:]...)
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
	at, finite := pgbin.FiniteTimestamptz(raw[colRecordedAt])
	if pos < 0 || !finite {
		return fmt.Errorf("position %d, recorded_at %x: out of range", pos, raw[colRecordedAt])
	}
	// Event types are few and a read's records mostly of one: the last
	// one's string serves until another comes.
	if string(raw[colType]) != rr.lastType {
		rr.lastType = string(raw[colType])
	}
	*r = Record{Ledger: rr.ledger, Position: uint64(pos), Type: rr.lastType,
		SchemaVersion: int(int16(binary.BigEndian.Uint16(raw[colSchemaVersion]))),
		RecordedAt:    at, CommandID: string(raw[colCommandID]),
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
