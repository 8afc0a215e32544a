package domain

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// sameTransfer compares two decoded transfers field by field (times by Equal).
func sameTransfer(a, b TransferCommitted) bool {
	if a.ID != b.ID || a.Reference != b.Reference || !a.EffectiveAt.Equal(b.EffectiveAt) ||
		len(a.Postings) != len(b.Postings) || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for i := range a.Postings {
		p, q := a.Postings[i], b.Postings[i]
		if p.Debit != q.Debit || p.Credit != q.Credit || p.Asset != q.Asset || p.Amount.Scale != q.Amount.Scale ||
			p.Amount.Units.Cmp(q.Amount.Units) != 0 {
			return false
		}
	}
	for k, v := range a.Metadata {
		if w, ok := b.Metadata[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func randomASCII(r *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.@- "
	b := make([]byte, r.IntN(n))
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

// TestDecodeTransferFastMatchesJSON: on the canonical form the writer writes,
// the fast decoder accepts and agrees with encoding/json.
func TestDecodeTransferFastMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for i := 0; i < 20000; i++ {
		e := TransferCommitted{ID: randomASCII(r, 30), Reference: randomASCII(r, 10),
			EffectiveAt: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC()}
		for range 1 + r.IntN(5) {
			e.Postings = append(e.Postings, Posting{Debit: randomASCII(r, 20), Credit: randomASCII(r, 20), Asset: "USD",
				Amount: Amount{Units: UnitsFromInt64(r.Int64N(1 << 60)), Scale: uint8(r.IntN(19))}})
		}
		if r.IntN(2) == 0 {
			e.Metadata = map[string]string{randomASCII(r, 8) + "k": randomASCII(r, 8), "z": randomASCII(r, 4)}
		}
		b := AppendEvent(nil, e)
		fast, err := decodeTransferCommitted(b)
		if err != nil {
			t.Fatalf("fast decoder declined canonical %s: %v", b, err)
		}
		var slow TransferCommitted
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatal(err)
		}
		if !sameTransfer(fast, slow) {
			t.Fatalf("fast %+v, encoding/json %+v, for %s", fast, slow, b)
		}
	}
}

// TestDecodeTransferFallsBack: what the fast decoder declines (escaped or
// non-ASCII strings) still decodes, through encoding/json.
func TestDecodeTransferFallsBack(t *testing.T) {
	e := TransferCommitted{ID: "t<1>", Reference: "café \"quoted\"", EffectiveAt: time.Unix(1, 0).UTC(),
		Postings: []Posting{{Debit: "a&b", Credit: "c", Asset: "USD", Amount: Amount{Units: UnitsFromInt64(5), Scale: 2}}}}
	b := AppendEvent(nil, e)
	if _, err := decodeTransferCommitted(b); err == nil {
		t.Fatalf("fast decoder accepted escaped %s", b)
	}
	got, err := UnmarshalEvent(TypeTransferCommitted, SchemaVersion, b)
	if err != nil || !sameTransfer(got.(TransferCommitted), e) {
		t.Errorf("UnmarshalEvent(%s) = %+v, %v; want %+v", b, got, err, e)
	}
}

// FuzzDecodeTransferCommitted: whatever the fast decoder accepts,
// encoding/json accepts too and reads the same.
func FuzzDecodeTransferCommitted(f *testing.F) {
	f.Add([]byte(`{"id":"t1","postings":[{"debit":"a","credit":"b","asset":"USD","amount":"10.00"}],"effective_at":"2026-11-22T10:00:00Z"}`))
	f.Add([]byte(`{"id":"t1","postings":[{"debit":"a","credit":"b","asset":"USD","amount":"1"}],"reference":"r","metadata":{"k":"v"},"effective_at":"2026-11-22T10:00:00.123456+01:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, err := decodeTransferCommitted(b)
		if err != nil {
			return
		}
		var slow TransferCommitted
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast decoder accepted %q, encoding/json refuses: %v", b, err)
		}
		if !sameTransfer(fast, slow) {
			t.Fatalf("fast %+v, encoding/json %+v, for %q", fast, slow, b)
		}
	})
}

// slowTime is what parser.time reads without its fast path: time.Parse,
// and only text that formats back to itself.
func slowTime(r []byte) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, string(r))
	return t, err == nil && t.Format(time.RFC3339Nano) == string(r)
}

// checkUTCTime fails t when the fast path accepts r and reads other than
// the slow path, or declines a UTC time's canonical text.
func checkUTCTime(t *testing.T, r []byte) {
	t.Helper()
	fast, ok := parseUTCTime(r)
	slow, slowOK := slowTime(r)
	switch {
	case ok && (!slowOK || !fast.Equal(slow) || fast.Location() != slow.Location()):
		t.Fatalf("%q: fast path read %v, the slow path %v (%v)", r, fast, slow, slowOK)
	case !ok && slowOK && slow.Location() == time.UTC:
		t.Fatalf("%q: fast path declined a UTC time's canonical text", r)
	}
}

// TestParseUTCTimeIsTimeParse: the fast path reads every UTC time's text as
// time.Parse does, from year 0 to 9999 and every fraction's length, and
// declines what time.Parse or the round trip refuse (a day past its month's
// end, a trailing zero, an offset).
func TestParseUTCTimeIsTimeParse(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	lo, hi := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for i := 0; i < 200000; i++ {
		ns := r.Int64N(1e9)
		// Fractions of every length: zero, and trailing zeros cut.
		ns -= ns % []int64{1, 10, 1e3, 1e6, 1e8, 1e9}[r.IntN(6)]
		tm := time.Unix(lo+r.Int64N(hi-lo+1), ns).UTC()
		text := []byte(tm.Format(time.RFC3339Nano))
		checkUTCTime(t, text)
		if got, ok := parseUTCTime(text); !ok || !got.Equal(tm) {
			t.Fatalf("%s read as %v, %v", text, got, ok)
		}
		// One byte changed: a digit, or something else.
		text[r.IntN(len(text))] = "0123456789-:.TZ+ x"[r.IntN(18)]
		checkUTCTime(t, text)
	}
	for _, s := range []string{"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"2000-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-31T23:59:60Z", "2026-12-31T24:00:00Z",
		"2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.10Z",
		"2026-01-01T00:00:00.123456789Z", "2026-01-01T00:00:00.1234567891Z", "2026-01-01T00:00:00+00:00",
		"2026-01-01T00:00:00z", "2026-01-01t00:00:00Z", "+026-01-01T00:00:00Z", "2026-01-01T00:00:00.-1Z"} {
		checkUTCTime(t, []byte(s))
	}
}

// FuzzParseUTCTime: whatever the fast path accepts, the slow path reads the
// same.
func FuzzParseUTCTime(f *testing.F) {
	f.Add([]byte("2026-11-22T10:00:00Z"))
	f.Add([]byte("2024-02-29T23:59:59.000000001Z"))
	f.Fuzz(func(t *testing.T, b []byte) { checkUTCTime(t, b) })
}

func BenchmarkUnmarshalTransfer(b *testing.B) {
	e := TransferCommitted{ID: "t-12-345678", EffectiveAt: time.Now().UTC(), Postings: []Posting{
		{Debit: "acc-123", Credit: "acc-4567", Asset: "USD", Amount: Amount{Units: UnitsFromInt64(12345), Scale: 2}}}}
	data := AppendEvent(nil, e)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := UnmarshalEvent(TypeTransferCommitted, SchemaVersion, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeAs[TransferCommitted](data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
