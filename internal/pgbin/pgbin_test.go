package pgbin

import (
	"bytes"
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
