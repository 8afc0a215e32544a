package protoread

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Next reads every field as protowire does, by its fast path or not, and
// refuses the field numbers protobuf refuses.
func TestNextAsProtowire(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		num := protowire.Number(1 + rng.IntN(20))
		if rng.IntN(4) == 0 {
			num = protowire.Number(1 + rng.Int32N(int32(protowire.MaxValidNumber)))
		}
		var b []byte
		switch rng.IntN(3) {
		case 0:
			b = protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), rng.Uint64N(1<<uint(1+rng.IntN(63))))
		case 1:
			b = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), make([]byte, rng.IntN(300)))
		default:
			b = protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), rng.Uint64())
		}
		b = append(b, 0x08, 0x01) // what follows
		f, rest, err := Next(b)
		n, typ, tagLen := protowire.ConsumeTag(b)
		valueLen := protowire.ConsumeFieldValue(n, typ, b[tagLen:])
		if err != nil || f.Num != num || f.Type != typ || len(rest) != 2 || len(b)-2 != tagLen+valueLen {
			t.Fatalf("%x: %+v, %d left, %v", b, f, len(rest), err)
		}
		switch typ {
		case protowire.VarintType:
			if v, _ := protowire.ConsumeVarint(b[tagLen:]); f.V != v {
				t.Fatalf("%x: %d, want %d", b, f.V, v)
			}
		case protowire.BytesType:
			if v, _ := protowire.ConsumeBytes(b[tagLen:]); len(f.Bytes) != len(v) {
				t.Fatalf("%x: %d bytes, want %d", b, len(f.Bytes), len(v))
			}
		}
	}
	for _, b := range [][]byte{
		protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), // a number past protobuf's
		{0x00, 0x01},      // number 0
		{0x0a, 0x05, 'a'}, // a length past the end
		{0x08, 0x80},      // a varint cut short
		{0x0f, 0x00},      // wire type 7
	} {
		if _, _, err := Next(b); err == nil {
			t.Errorf("%x read, want it refused", b)
		}
	}
}

// A Timestamp given twice is merged: the fields the second sets win.
func TestTimestampMerges(t *testing.T) {
	var ts [2]int64
	first := protowire.AppendVarint(protowire.AppendTag(nil, timestampSeconds, protowire.VarintType), 5)
	first = protowire.AppendVarint(protowire.AppendTag(first, timestampNanos, protowire.VarintType), 7)
	second := protowire.AppendVarint(protowire.AppendTag(nil, timestampNanos, protowire.VarintType), uint64(1<<64-1))
	for _, b := range [][]byte{first, second} {
		if err := Timestamp(b, &ts); err != nil {
			t.Fatal(err)
		}
	}
	if ts != [2]int64{5, -1} {
		t.Errorf("merged: %v, want [5 -1]", ts)
	}
}
