package domain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// TestSnapshotIndexSteps: the index section's hashes, each a step up from
// the last, decode to the hashes they add up to, from the lowest (a first
// step of 0) to the highest the index keeps, across shards; a step of 0
// after the first (a hash twice) or one past the top bits is refused.
func TestSnapshotIndexSteps(t *testing.T) {
	t.Parallel()
	const top = 1<<idHashBits - 1 // the highest hash, shifted down
	for _, tc := range []struct {
		name  string
		steps []uint64
		ok    bool
	}{
		{"ascending", []uint64{5, 1, 1 << 32, 77}, true},
		{"from zero", []uint64{0, 1}, true},
		{"to the top", []uint64{0, top}, true},
		{"the top alone", []uint64{top}, true},
		{"a hash twice", []uint64{3, 0}, false},
		{"past the top", []uint64{top, 1}, false},
		{"past the top at once", []uint64{top + 1}, false},
		{"far past the top", []uint64{1, 1 << 63}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := binary.AppendUvarint(nil, uint64(len(tc.steps)))
			var want []hashEntry
			h := uint64(0)
			for i, step := range tc.steps {
				b = binary.AppendUvarint(b, step)
				b = binary.AppendUvarint(b, packIndexValue(uint64(i+1)))
				h += step << (64 - idHashBits)
				want = append(want, hashEntry{h, uint64(i + 1)})
			}
			b = binary.AppendUvarint(b, 0) // collided: none
			d := &snapReader{r: bytes.NewReader(b), h: sha256.New(), buf: make([]byte, 64), size: -1}
			s := &State{}
			d.index(s)
			if !tc.ok {
				if !errors.Is(d.err, ErrSnapshotCorrupt) {
					t.Fatalf("steps %v: %v, want ErrSnapshotCorrupt", tc.steps, d.err)
				}
				return
			}
			if d.err != nil {
				t.Fatalf("steps %v: %v", tc.steps, d.err)
			}
			if got := entries(s.ids); !slices.Equal(got, want) {
				t.Fatalf("steps %v: entries %#x, want %#x", tc.steps, got, want)
			}
		})
	}
}
