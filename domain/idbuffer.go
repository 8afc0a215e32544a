package domain

import "strings"

// Limits of an idBuffer.
const (
	// idBufferMin and idBufferMax bound its buffers: the first holds
	// idBufferMin bytes, each next one twice the last up to idBufferMax.
	idBufferMin = 256
	idBufferMax = 64 << 10
	// idLong is the longest id copied into a buffer; a longer one gets a
	// string of its own.
	idLong = 1 << 10
)

// idBuffer keeps copies of ids one after another, for the tables that
// look accounts up by id. A look-up that compares a key then reads bytes
// next to the other keys, often in cache, instead of the string the key was
// made from: a small allocation anywhere in the heap, a cache miss a
// comparison at a million accounts (BenchmarkEvolveScattered: folding a
// transfer 15 % faster there).
type idBuffer struct {
	b strings.Builder
}

// copy returns a copy of id in the buffer. A Builder never changes the
// bytes it has written, and a full one is left to the strings cut from it,
// so the copies stay valid for as long as they are held.
func (t *idBuffer) copy(id string) string {
	if len(id) > idLong {
		return strings.Clone(id)
	}
	if t.b.Len()+len(id) > t.b.Cap() {
		size := min(max(2*t.b.Cap(), idBufferMin), idBufferMax)
		t.b = strings.Builder{}
		t.b.Grow(size)
	}
	t.b.WriteString(id)
	all := t.b.String()
	return all[len(all)-len(id):]
}
