package natsbus

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/domain"
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
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "compressed", true: "plain"}[plain], func(t *testing.T) {
			testFrameRoundTrip(t, plain)
		})
	}
}

func testFrameRoundTrip(t *testing.T, plain bool) {
	recs := frameRecords("l1", 7, 3, 10)
	msg := newFrame("s", recs, plain)
	if magic := map[bool]string{false: frameMagicS2, true: frameMagic}[plain]; !strings.HasPrefix(string(msg.Data), magic) {
		t.Fatalf("frame begins %q, want %q", msg.Data[:4], magic)
	}
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

// TestCompressedFrames: a compressed frame is smaller than its records, a
// frame's pooled buffers reused for the next frame leave the last one's message
// intact, and a compressed body that is corrupt or claims more than
// frameDecodedMax is refused (the latter before anything is allocated for
// it).
func TestCompressedFrames(t *testing.T) {
	recs := frameRecords("l1", 1, 200, 200)
	a := newFrame("s", recs[:100], false)
	b := newFrame("s", recs[100:], false)
	plain := newFrame("s", recs[:100], true)
	plainData := slices.Clone(plain.Data)
	newFrame("s", recs[100:], true)
	if !slices.Equal(plain.Data, plainData) {
		t.Errorf("a plain frame changed when the next one was made")
	}
	if len(a.Data)*4 > len(plain.Data) {
		t.Errorf("compressed frame of %d bytes, plain %d: want a quarter or less", len(a.Data), len(plain.Data))
	}
	for i, m := range []struct {
		data  []byte
		first uint64
	}{{a.Data, 1}, {b.Data, 101}} {
		got, err := ParseFrame("l1", m.first, m.first+99, m.data)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for j := range got {
			want := &recs[int(m.first)-1+j]
			if got[j].Position != want.Position || string(got[j].Payload) != string(want.Payload) || !got[j].VerifyHash() {
				t.Fatalf("frame %d, record %d: got %+v, want %+v", i, j, got[j], *want)
			}
		}
	}
	body := a.Data[len(frameMagicS2):]
	// An S2 block has no checksum: a changed literal decodes, and the
	// chain's hashes (which every reader checks, ParseFrame's callers)
	// are what catch it, as in a plain frame.
	flipped := slices.Clone(a.Data)
	flipped[len(flipped)/2] ^= 0xff
	if got, err := ParseFrame("l1", 1, 100, flipped); err == nil &&
		!slices.ContainsFunc(got, func(r eventstore.Record) bool { return !r.VerifyHash() }) {
		t.Errorf("a byte changed in the compressed body: parsed, and every record's hash holds")
	}
	for name, data := range map[string][]byte{
		"cut short":     a.Data[:len(a.Data)-10],
		"no body":       []byte(frameMagicS2),
		"claims 1 GiB":  append([]byte(frameMagicS2), 0x80, 0x80, 0x80, 0x80, 0x04),
		"claims 9 MiB":  append([]byte(frameMagicS2), binaryUvarint(9<<20)...),
		"unknown magic": append([]byte("LGF\x03"), body...),
	} {
		if _, err := ParseFrame("l1", 1, 100, data); !errors.Is(err, ErrBadFrame) && !errors.Is(err, eventstore.ErrMalformed) {
			t.Errorf("%s: error %v, want %v", name, err, ErrBadFrame)
		}
	}
}

// TestCompressedFrameDecodedBound: a frame of the largest payload a writer
// decides (domain.EventPayloadMax) is read, compressed or plain; one whose
// record alone decodes to more than frameDecodedMax is refused.
func TestCompressedFrameDecodedBound(t *testing.T) {
	const jsonAround = len(`{"x":""}`)
	for _, c := range []struct {
		payload int
		ok      bool
	}{{domain.EventPayloadMax - jsonAround, true}, {frameDecodedMax, false}} {
		for _, plain := range []bool{false, true} {
			msg := newFrame("s", frameRecords("l1", 1, 1, c.payload), plain)
			if _, err := ParseFrame("l1", 1, 1, msg.Data); (err == nil) != c.ok && !plain {
				t.Errorf("a compressed record of %d bytes: error %v, want read %v", c.payload, err, c.ok)
			} else if plain && c.ok && err != nil {
				t.Errorf("a plain record of %d bytes: %v", c.payload, err)
			}
		}
	}
}

// TestLargestFrameWithinMaxPayloadMin: the largest record a writer decides
// (the largest payload, every envelope field at its longest), its payload
// random so that S2 cannot shrink it, goes in one frame whose message,
// headers included, fits MaxPayloadMin, plain or compressed, and reads back.
func TestLargestFrameWithinMaxPayloadMin(t *testing.T) {
	if got := s2.MaxEncodedLen(frameDecodedMax); got > frameDecodedMax+frameS2ExtraMax {
		t.Fatalf("s2.MaxEncodedLen(%d) = %d, over frameS2ExtraMax (%d)", frameDecodedMax, got, frameS2ExtraMax)
	}
	ledger := strings.Repeat("l", domain.LedgerNameLenMax)
	rec := eventstore.Record{Ledger: ledger, Position: math.MaxUint64, Type: strings.Repeat("T", domain.EventTypeLenMax),
		SchemaVersion: math.MaxInt32, CommandID: strings.Repeat("c", domain.AlertIDLenMax),
		RecordedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), Payload: make([]byte, domain.EventPayloadMax)}
	_, _ = rand.NewChaCha8([32]byte{1}).Read(rec.Payload)
	rec.Seal(eventstore.Hash{})
	if got := recordSizeMax(&rec); got > frameEnvelopeMax+domain.EventPayloadMax {
		t.Fatalf("the largest record takes %d bytes in a frame, frameEnvelopeMax+EventPayloadMax is %d", got,
			frameEnvelopeMax+domain.EventPayloadMax)
	}
	for _, plain := range []bool{false, true} {
		msg := newFrame(Subject(ledger), []eventstore.Record{rec}, plain)
		msg.Header.Set(jetstream.MsgIDHeader, frameID(ledger, math.MaxUint64, math.MaxUint64))
		msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(math.MaxUint64, 10))
		headers := len("NATS/1.0\r\n\r\n")
		for k, vs := range msg.Header {
			for _, v := range vs {
				headers += len(k) + len(": \r\n") + len(v)
			}
		}
		if headers > frameHeadersMax {
			t.Errorf("plain %v: headers of %d bytes, frameHeadersMax is %d", plain, headers, frameHeadersMax)
		}
		if size := len(msg.Data) + headers; size > MaxPayloadMin {
			t.Errorf("plain %v: a message of %d bytes, MaxPayloadMin is %d", plain, size, MaxPayloadMin)
		}
		got, err := ParseFrame(ledger, math.MaxUint64, math.MaxUint64, msg.Data)
		if err != nil {
			t.Fatalf("plain %v: %v", plain, err)
		}
		if !got[0].VerifyHash() || !bytes.Equal(got[0].Payload, rec.Payload) {
			t.Errorf("plain %v: the record does not read back", plain)
		}
	}
}

// TestCompressedFrameClaimsBounded: a compressed body claiming more than
// frameDecodedMax costs no allocation of what it claims.
func TestCompressedFrameClaimsBounded(t *testing.T) {
	data := append([]byte(frameMagicS2), binaryUvarint(frameDecodedMax+1)...)
	data = append(data, make([]byte, 64)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ParseFrame("l1", 1, 1, data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadFrame) {
		t.Fatalf("error %v, want %v", err, ErrBadFrame)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("%d bytes allocated for a frame claiming %d", got, frameDecodedMax+1)
	}
}

func binaryUvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
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
	f.Add(uint64(1), uint64(3), newFrame("s", frameRecords("l", 1, 3, 5), true).Data)
	f.Add(uint64(1), uint64(1), append([]byte(frameMagicS2), 0x80, 0x80, 0x80, 0x80, 0x04))
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
