package projections

import "testing"

// TestCopyRowsKeepsAFullBatch: the buffer reserved for a full batch of
// statement lines (BatchMaxDefault transfers of one posting, two lines
// each) is one the pool keeps after its send, so that a busy projection
// does not allocate and zero it again for every batch.
func TestCopyRowsKeepsAFullBatch(t *testing.T) {
	w := newCopyRows(2*BatchMaxDefault, movementLineBytes)
	if cap(w.b) > copyRowsKeepMax {
		t.Fatalf("a full batch's buffer of %d bytes is over the %d the pool keeps", cap(w.b), copyRowsKeepMax)
	}
	w.release(nil)
}
