package eventstore

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// referenceCanonical is AppendCanonical as first written, with
// strconv.AppendQuote and time.Time.AppendFormat: the bytes every hash in
// every log covers.
func referenceCanonical(r *Record) []byte {
	b := []byte(`{"ledger":`)
	b = strconv.AppendQuote(b, r.Ledger)
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, r.Position, 10)
	b = append(b, `,"type":`...)
	b = strconv.AppendQuote(b, r.Type)
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	b = append(b, `,"recorded_at":"`...)
	b = r.RecordedAt.UTC().AppendFormat(b, recordedAtLayout)
	b = append(b, `","command_id":`...)
	b = strconv.AppendQuote(b, r.CommandID)
	b = append(b, `,"payload":`...)
	b = append(b, r.Payload...)
	return append(b, '}')
}

// FuzzCanonicalFastPaths: the hand-written quoting and time formatting give
// the bytes strconv and time give, for any strings and any instant.
func FuzzCanonicalFastPaths(f *testing.F) {
	f.Add("main", "TransferCommitted", "t-1", int64(1_764_000_000_123_456), int64(0))
	f.Add("ü", "a\"b", "c\\d\x00\xff", int64(-62_135_596_800_000_000), int64(3600))
	f.Add("", "\u2028", "\t", int64(253_402_300_799_999_999), int64(-7200))
	f.Add("x", "y", "z", int64(253_402_300_800_000_000), int64(0)) // year 10000
	f.Fuzz(func(t *testing.T, ledger, typ, cmd string, us, offset int64) {
		at := time.UnixMicro(us).In(time.FixedZone("z", int(offset%86_400)))
		r := &Record{Ledger: ledger, Position: uint64(us), Type: typ, SchemaVersion: int(offset), RecordedAt: at,
			CommandID: cmd, Payload: []byte(`{"a":1}`)}
		if got, want := r.AppendCanonical(nil), referenceCanonical(r); !bytes.Equal(got, want) {
			t.Fatalf("canonical bytes\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkVerifyHash(b *testing.B) {
	r := &Record{Ledger: "bench", Position: 123_456, Type: "TransferCommitted", SchemaVersion: 1,
		RecordedAt: time.Date(2026, 12, 5, 10, 0, 0, 123_456_000, time.UTC), CommandID: "t-123456",
		Payload: []byte(`{"id":"t-123456","postings":[{"debit":"user:1","credit":"user:2","asset":"USD","amount":"1.00"}]}`)}
	r.Seal(Hash{})
	b.ReportAllocs()
	for b.Loop() {
		if !r.VerifyHash() {
			b.Fatal("hash does not verify")
		}
	}
}
