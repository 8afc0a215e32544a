package eventstore

import (
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// The arrays append_events takes are built here in PostgreSQL's binary
// array form, straight from the records. pgx encodes a Go slice element by
// element through reflection and an encode plan each ([][]byte especially):
// a tenth of ledgerd's CPU in batches of 1,000 (docs/perf.md, session 12).

// binaryArray is a one-dimensional array already in its binary form.
type binaryArray []byte

// arrayOf starts an array of n elements of type elem, with room for size
// bytes of elements.
func arrayOf(elem uint32, n int, size int) []byte {
	return pgbin.ArrayHeader(make([]byte, 0, 20+size), elem, n)
}

// appendArrays are recs' columns as the arrays append_events takes.
type appendArrays struct {
	types, versions, recorded, commands, payloads, prev, hashes binaryArray
}

// size is the bytes of all the arrays.
func (a *appendArrays) size() int {
	return len(a.types) + len(a.versions) + len(a.recorded) + len(a.commands) + len(a.payloads) + len(a.prev) + len(a.hashes)
}

// firstArray is the first of a query's binary arrays, with the size of them
// all: pgx encodes a query's parameters one after another into one buffer
// grown by append, so that arrays of megabytes were copied again at each
// doubling (twice their size allocated for an append); its plan makes room
// for all of them at once.
type firstArray struct {
	binaryArray
	all int
}

func appendColumns(recs []Record) appendArrays {
	n := len(recs)
	var strs, payloads int
	for i := range recs {
		strs += len(recs[i].Type) + len(recs[i].CommandID)
		payloads += len(recs[i].Payload)
	}
	a := appendArrays{
		types: arrayOf(pgbin.OIDText, n, strs+4*n), versions: arrayOf(pgbin.OIDInt2, n, 6*n),
		recorded: arrayOf(pgbin.OIDTimestamptz, n, 12*n), commands: arrayOf(pgbin.OIDText, n, strs+4*n),
		payloads: arrayOf(pgbin.OIDJSON, n, payloads+4*n),
		prev:     arrayOf(pgbin.OIDBytea, n, (4+HashSize)*n), hashes: arrayOf(pgbin.OIDBytea, n, (4+HashSize)*n),
	}
	for i := range recs {
		r := &recs[i]
		a.types = pgbin.Text(a.types, r.Type)
		a.versions = pgbin.Int2(a.versions, int16(r.SchemaVersion))
		a.recorded = pgbin.Timestamptz(a.recorded, r.RecordedAt)
		a.commands = pgbin.Text(a.commands, r.CommandID)
		a.payloads = pgbin.Bytes(a.payloads, r.Payload) // json's binary form is its text
		a.prev = pgbin.Bytes(a.prev, r.PrevHash[:])
		a.hashes = pgbin.Bytes(a.hashes, r.Hash[:])
	}
	return a
}

// binaryArrayCodec is pgx's codec for an array type, which also sends a
// binaryArray as it is.
type binaryArrayCodec struct{ pgtype.Codec }

func (c binaryArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case binaryArray:
			return binaryArrayPlan{}
		case firstArray:
			return firstArrayPlan{}
		}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type binaryArrayPlan struct{}

func (binaryArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return append(buf, value.(binaryArray)...), nil
}

type firstArrayPlan struct{}

func (firstArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(firstArray)
	return append(slices.Grow(buf, a.all), a.binaryArray...), nil
}

// useBinaryArrays makes conn send a binaryArray as it is, for the array
// types append_events takes. A connection's type map is its own, and
// appends hold their connection, so registering races with nothing.
func useBinaryArrays(conn *pgx.Conn) {
	m := conn.TypeMap()
	for _, oid := range [...]uint32{pgbin.OIDTextArray, pgbin.OIDInt2Array, pgbin.OIDTimeArray, pgbin.OIDJSONArray, pgbin.OIDByteaArray} {
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
