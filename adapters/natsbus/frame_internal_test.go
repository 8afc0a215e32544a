package natsbus

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/eventstore"
)

func frameRecords(ledger string, first uint64, n, payload int) []eventstore.Record {
	recs := make([]eventstore.Record, n)
	var prev eventstore.Hash
	for i := range recs {
		recs[i] = eventstore.Record{Ledger: ledger, Position: first + uint64(i), Type: "TransferCommitted", SchemaVersion: 1,
			CommandID: "c", Payload: []byte(`{"x":"` + strings.Repeat("a", payload) + `"}`)}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	return recs
}

func TestFrameRoundTrip(t *testing.T) {
	recs := frameRecords("l1", 7, 3, 10)
	msg := NewFrame("s", recs)
	first, last, err := frameSpan(msg.Header)
	if err != nil || first != 7 || last != 9 {
		t.Fatalf("span %d..%d, %v; want 7..9", first, last, err)
	}
	got, err := ParseFrame("l1", first, last, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if got[i].Position != recs[i].Position || got[i].Hash != recs[i].Hash || string(got[i].Payload) != string(recs[i].Payload) || !got[i].VerifyHash() {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], recs[i])
		}
	}
	for name, bad := range map[string]func() ([]eventstore.Record, error){
		"another ledger":    func() ([]eventstore.Record, error) { return ParseFrame("l2", 7, 9, msg.Data) },
		"positions shifted": func() ([]eventstore.Record, error) { return ParseFrame("l1", 8, 10, msg.Data) },
		"count differs":     func() ([]eventstore.Record, error) { return ParseFrame("l1", 7, 8, msg.Data) },
		"cut short":         func() ([]eventstore.Record, error) { return ParseFrame("l1", 7, 9, msg.Data[:len(msg.Data)-1]) },
		"trailing bytes":    func() ([]eventstore.Record, error) { return ParseFrame("l1", 7, 9, append(msg.Data, 0)) },
	} {
		if _, err := bad(); !errors.Is(err, ErrBadFrame) && !errors.Is(err, eventstore.ErrMalformed) {
			t.Errorf("%s: error %v, want %v", name, err, ErrBadFrame)
		}
	}
}

func TestFrameCut(t *testing.T) {
	for _, c := range []struct {
		name       string
		n, payload int
		want       int
	}{
		{"few small records travel together", 10, 100, 10},
		{"at most frameRecordsMax records", 3000, 10, frameRecordsMax},
		{"at most frameBytesMax bytes", 100, 100 << 10, 5},
		{"a record larger than a frame travels alone", 3, frameBytesMax * 2, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs := frameRecords("l", 1, c.n, c.payload)
			if got := frameCut(recs); got != c.want {
				t.Fatalf("frameCut of %d records of %d bytes: %d, want %d", c.n, c.payload, got, c.want)
			}
			if size := len(NewFrame("s", recs[:c.want]).Data); c.want > 1 && size > frameBytesMax {
				t.Fatalf("a frame of %d records is %d bytes, over %d", c.want, size, frameBytesMax)
			}
		})
	}
}

// TestAppendFrameOntoPending: frames appended onto the records a source
// has pending, whose first ones it has handed out capped at their end,
// leave those untouched, continue the pending ones in order, and a frame
// that does not parse leaves the pending records as they were.
func TestAppendFrameOntoPending(t *testing.T) {
	a, b, c := NewFrame("s", frameRecords("l1", 7, 3, 10)), NewFrame("s", frameRecords("l1", 10, 4, 20)),
		NewFrame("s", frameRecords("l1", 14, 2, 5))
	pending, err := appendFrame(nil, "l1", 7, 9, a.Data)
	if err != nil || len(pending) != 3 {
		t.Fatalf("first frame: %d records, %v", len(pending), err)
	}
	// Room in the array past the records pending, so that the next frames
	// are parsed into it, right after the records handed out.
	array := slices.Grow(pending, 16)
	handed := array[:2:2] // as Next hands them out
	pending = array[2:]
	if pending, err = appendFrame(pending, "l1", 10, 13, b.Data); err != nil {
		t.Fatal(err)
	}
	if &pending[0] != &array[2] {
		t.Fatal("the frame was not parsed into the array's room")
	}
	kept := slices.Clone(pending)
	// A frame cut off in its last record fails after parsing the others
	// into the room past the records pending.
	if got, err := appendFrame(pending, "l1", 14, 15, c.Data[:len(c.Data)-1]); got != nil || err == nil {
		t.Fatalf("a frame cut short read as %d records, %v", len(got), err)
	}
	for i := range kept {
		if pending[i].Position != kept[i].Position || pending[i].Hash != kept[i].Hash {
			t.Fatalf("a frame that did not parse changed pending record %d", i)
		}
	}
	if pending, err = appendFrame(pending, "l1", 14, 15, c.Data); err != nil {
		t.Fatal(err)
	}
	for i, r := range handed {
		if r.Position != uint64(7+i) || !r.VerifyHash() {
			t.Fatalf("a record handed out changed: %d at %d", r.Position, i)
		}
	}
	if len(kept) != 5 || kept[0].Position != 9 || kept[4].Position != 13 {
		t.Fatalf("the records pending before the bad frame: %d from %d", len(kept), kept[0].Position)
	}
	for i, r := range pending {
		if r.Position != uint64(9+i) || !r.VerifyHash() {
			t.Fatalf("pending record %d is at %d (or does not verify)", i, r.Position)
		}
	}
	if len(pending) != 7 {
		t.Fatalf("%d records pending, want 7 (9..15)", len(pending))
	}
}

// FuzzParseFrame: whatever a stream message holds (the stream is not
// trusted), ParseFrame returns consecutive records of the ledger or an error.
func FuzzParseFrame(f *testing.F) {
	f.Add(uint64(1), uint64(3), NewFrame("s", frameRecords("l", 1, 3, 5)).Data)
	f.Add(uint64(5), uint64(5), NewFrame("s", frameRecords("l", 5, 1, 0)).Data)
	f.Add(uint64(1), uint64(1), []byte(frameMagic+"\x01\x05LGR\x01"))
	f.Fuzz(func(t *testing.T, first, last uint64, data []byte) {
		recs, err := ParseFrame("l", first, last, data)
		if err != nil {
			return
		}
		if uint64(len(recs)) != last-first+1 {
			t.Fatalf("%d records for %d..%d", len(recs), first, last)
		}
		for i := range recs {
			if recs[i].Ledger != "l" || recs[i].Position != first+uint64(i) {
				t.Fatalf("record %d is %s@%d", i, recs[i].Ledger, recs[i].Position)
			}
		}
	})
}
