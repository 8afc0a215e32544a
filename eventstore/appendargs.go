package eventstore

import (
	"encoding/binary"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The arrays append_events takes are built here in PostgreSQL's binary
// array form, straight from the records. pgx encodes a Go slice element by
// element through reflection and an encode plan each ([][]byte especially):
// a tenth of ledgerd's CPU in batches of 1,000 (docs/perf.md, session 12).

// binaryArray is a one-dimensional array already in its binary form.
type binaryArray []byte

// Element types of the arrays, and the arrays' own.
const (
	oidBytea       = 17
	oidInt2        = 21
	oidText        = 25
	oidJSON        = 114
	oidTimestamptz = 1184
	oidJSONArray   = 199
	oidByteaArray  = 1001
	oidInt2Array   = 1005
	oidTextArray   = 1009
	oidTimeArray   = 1185
)

// arrayOf starts an array of n elements of type elem.
func arrayOf(elem uint32, n int, size int) []byte {
	b := make([]byte, 0, 20+size)
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, elem)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return binary.BigEndian.AppendUint32(b, 1) // lower bound
}

func appendElem(b []byte, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendStringElem(b []byte, v string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// appendArrays are recs' columns as the arrays append_events takes.
type appendArrays struct {
	types, versions, recorded, commands, payloads, prev, hashes binaryArray
}

func appendColumns(recs []Record) appendArrays {
	n := len(recs)
	var strs, payloads int
	for i := range recs {
		strs += len(recs[i].Type) + len(recs[i].CommandID)
		payloads += len(recs[i].Payload)
	}
	a := appendArrays{
		types: arrayOf(oidText, n, strs+4*n), versions: arrayOf(oidInt2, n, 6*n), recorded: arrayOf(oidTimestamptz, n, 12*n),
		commands: arrayOf(oidText, n, strs+4*n), payloads: arrayOf(oidJSON, n, payloads+4*n),
		prev: arrayOf(oidBytea, n, (4+HashSize)*n), hashes: arrayOf(oidBytea, n, (4+HashSize)*n),
	}
	for i := range recs {
		r := &recs[i]
		a.types = appendStringElem(a.types, r.Type)
		a.versions = binary.BigEndian.AppendUint32(a.versions, 2)
		a.versions = binary.BigEndian.AppendUint16(a.versions, uint16(int16(r.SchemaVersion)))
		a.recorded = binary.BigEndian.AppendUint32(a.recorded, 8)
		us := r.RecordedAt.Unix()*1_000_000 + int64(r.RecordedAt.Nanosecond())/1000
		a.recorded = binary.BigEndian.AppendUint64(a.recorded, uint64(us-microsFromUnixToY2K))
		a.commands = appendStringElem(a.commands, r.CommandID)
		a.payloads = appendElem(a.payloads, r.Payload) // json's binary form is its text
		a.prev = appendElem(a.prev, r.PrevHash[:])
		a.hashes = appendElem(a.hashes, r.Hash[:])
	}
	return a
}

// microsFromUnixToY2K is how far PostgreSQL's epoch, 2000-01-01 UTC, is
// from Unix's, in microseconds.
const microsFromUnixToY2K = 946_684_800 * 1_000_000

// binaryArrayCodec is pgx's codec for an array type, which also sends a
// binaryArray as it is.
type binaryArrayCodec struct{ pgtype.Codec }

func (c binaryArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(binaryArray); ok && format == pgtype.BinaryFormatCode {
		return binaryArrayPlan{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type binaryArrayPlan struct{}

func (binaryArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return append(buf, value.(binaryArray)...), nil
}

// useBinaryArrays makes conn send a binaryArray as it is, for the array
// types append_events takes. A connection's type map is its own, and
// appends hold their connection, so registering races with nothing.
func useBinaryArrays(conn *pgx.Conn) {
	m := conn.TypeMap()
	for _, oid := range [...]uint32{oidTextArray, oidInt2Array, oidTimeArray, oidJSONArray, oidByteaArray} {
		t, ok := m.TypeForOID(oid)
		if !ok {
			continue // pgx knows them all; without one, pgx's own plan reports the type it lacks
		}
		if _, ours := t.Codec.(binaryArrayCodec); ours {
			continue
		}
		m.RegisterType(&pgtype.Type{Name: t.Name, OID: oid, Codec: binaryArrayCodec{t.Codec}})
	}
}
