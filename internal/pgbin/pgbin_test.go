package pgbin

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// TestValues: each value's bytes as PostgreSQL's binary format has them
// (what the projectors' and the writer's tests read back through
// PostgreSQL, checked here without it).
func TestValues(t *testing.T) {
	t.Parallel()
	y2k := time.Date(2000, 1, 1, 0, 0, 0, 1999, time.UTC) // 1.999 µs: truncated to 1
	for _, c := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"null", Null(nil), []byte{0xff, 0xff, 0xff, 0xff}},
		{"text", Text(nil, "ab"), []byte{0, 0, 0, 2, 'a', 'b'}},
		{"bytes", Bytes(nil, []byte{7}), []byte{0, 0, 0, 1, 7}},
		{"int2", Int2(nil, -2), []byte{0, 0, 0, 2, 0xff, 0xfe}},
		{"int4", Int4(nil, 1), []byte{0, 0, 0, 4, 0, 0, 0, 1}},
		{"int8", Int8(nil, 1), []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"bool", Bool(nil, true), []byte{0, 0, 0, 1, 1}},
		{"timestamptz at the epoch", Timestamptz(nil, y2k), []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"timestamptz before it", Timestamptz(nil, y2k.Add(-2*time.Microsecond)),
			[]byte{0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"empty array", ArrayHeader(nil, OIDText, 0), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, OIDText}},
		{"array of 2", ArrayHeader(nil, OIDText, 2), []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, OIDText, 0, 0, 0, 2, 0, 0, 0, 1}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, c.want)
		}
	}
	b, at := Open([]byte{9})
	b = Close(append(b, 'x', 'y', 'z'), at)
	if want := []byte{9, 0, 0, 0, 3, 'x', 'y', 'z'}; !bytes.Equal(b, want) {
		t.Errorf("open, three bytes, close: % x, want % x", b, want)
	}
}

// TestTimeOfTimestamptz: a timestamptz's binary value read back, at
// PostgreSQL's epoch, around it, and at the ends of its range (4713 BC,
// 294276 AD: MIN_TIMESTAMP and END_TIMESTAMP - 1 in its
// datatype/timestamp.h), where adding the epoch before converting
// overflowed; and Timestamptz's bytes read back to the time written.
func TestTimeOfTimestamptz(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		us   int64
		want time.Time
	}{
		{0, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{-1, time.Date(1999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{1_500_001, time.Date(2000, 1, 1, 0, 0, 1, 500_001_000, time.UTC)},
		{-1_500_001, time.Date(1999, 12, 31, 23, 59, 58, 499_999_000, time.UTC)},
		{9_223_371_331_199_999_999, time.Date(294276, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{-211_813_488_000_000_000, time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)},
	} {
		if got := TimeOfTimestamptz(c.us); !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("TimeOfTimestamptz(%d) = %v, want %v", c.us, got, c.want)
		}
	}
	at := time.Date(1987, 6, 5, 4, 3, 2, 123_456_000, time.UTC)
	b := Timestamptz(nil, at)
	if got := TimeOfTimestamptz(int64(binary.BigEndian.Uint64(b[4:]))); !got.Equal(at) {
		t.Errorf("Timestamptz of %v read back as %v", at, got)
	}
}

// TestTextArrayOf: arrays written by ArrayHeader and Text read back, and
// values that are not a one-dimensional text[] refused, none of them
// read past its end.
func TestTextArrayOf(t *testing.T) {
	t.Parallel()
	array := func(elems ...string) []byte {
		b := ArrayHeader(nil, OIDText, len(elems))
		for _, e := range elems {
			b = Text(b, e)
		}
		return b
	}
	for _, want := range [][]string{{}, {""}, {"a"}, {"acc-1", "{x,\"y\"}", "ü", ""}} {
		got, err := TextArrayOf(array(want...))
		if err != nil || got == nil || len(got) != len(want) {
			t.Fatalf("%q: read as %q, %v", want, got, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%q: read as %q", want, got)
			}
		}
	}
	two := array("ab", "c")
	bad := map[string][]byte{
		"empty":                 nil,
		"header only":           two[:12],
		"truncated element":     two[:len(two)-1],
		"a byte past":           append(array("ab", "c"), 0),
		"another type":          ArrayHeader(nil, OIDInt8, 0),
		"two dimensions":        binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(append([]byte{0, 0, 0, 2}, two[4:]...), 1), 1),
		"a NULL element":        Null(ArrayHeader(nil, OIDText, 1)),
		"a length past the end": binary.BigEndian.AppendUint32(ArrayHeader(nil, OIDText, 1), 100),
		"more elements than bytes": binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
			binary.BigEndian.AppendUint32(nil, 1), 0), OIDText)[:12],
	}
	bad["more elements than bytes"] = append(bad["more elements than bytes"], 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1)
	for name, b := range bad {
		if got, err := TextArrayOf(b); err == nil {
			t.Errorf("%s (% x): read as %q, want an error", name, b, got)
		}
	}
}
