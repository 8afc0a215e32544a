package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// newSource returns a source for ledger on its own connection, closed at the
// end of the test.
func newSource(t *testing.T, store *eventstore.Store, ledger string) *natsbus.Source {
	t.Helper()
	src := natsbus.NewSource(ledger, jetStream(t), store, natsbus.StreamOptions{}, testLogger(t))
	t.Cleanup(src.Close)
	return src
}

// readRange reads positions from..to with Next, max at a time, checking that
// each call returns 1..max records starting exactly where asked.
func readRange(t *testing.T, src *natsbus.Source, from, to uint64, max int) []eventstore.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), relayWaitMax)
	defer cancel()
	var got []eventstore.Record
	for next := from; next <= to; {
		recs, err := src.Next(ctx, next, max)
		testenv.NoError(t, err)
		if len(recs) == 0 || len(recs) > max {
			t.Fatalf("Next(%d, %d) returned %d records, want 1..%d", next, max, len(recs), max)
		}
		for i := range recs {
			if got, want := recs[i].Position, next+uint64(i); got != want {
				t.Fatalf("Next(%d, %d): record %d at position %d, want %d", next, max, i, got, want)
			}
		}
		got = append(got, recs...)
		next += uint64(len(recs))
	}
	if n := uint64(len(got)); n != to-from+1 {
		t.Fatalf("read %d records from %d, want %d (to %d)", n, from, to-from+1, to)
	}
	return got
}

// checkRecords compares records read from a source with the log's.
func checkRecords(t *testing.T, got, want []eventstore.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameRecord(&want[i], &got[i]) {
			t.Fatalf("record %d differs from the log (-log +source):\n%s", i, cmp.Diff(want[i], got[i]))
		}
	}
}

// sourceFrameRecords is the most records a frame of publishedLog holds.
const sourceFrameRecords = 50

// publishedLog appends n records to a new ledger and waits until its
// stream holds them all, in frames of at most sourceFrameRecords.
func publishedLog(t *testing.T, n int) (*eventstore.Store, string, *testLog, *runningRelay) {
	t.Helper()
	store, ledger := openStore(t), testenv.Name(t)
	log := newTestLog(t, store, ledger)
	log.append(n)
	// Pages of sourceFrameRecords: frames of that many records at most.
	relay := startRelay(t, ledger, jetStream(t), pagedLog{log: store, pageMax: sourceFrameRecords})
	waitStreamAt(t, jetStream(t), ledger, log.head)
	return store, ledger, log, relay
}

func TestSourceNextInOrder(t *testing.T) {
	t.Parallel()
	store, ledger, log, _ := publishedLog(t, 300)
	want := readLog(t, store, ledger)
	src := newSource(t, store, ledger)

	t.Log("from the start, 64 at a time")
	checkRecords(t, readRange(t, src, 1, log.head, 64), want)
	t.Log("from the middle, on a new source")
	checkRecords(t, readRange(t, newSource(t, store, ledger), 150, log.head, 1000), want[149:])
	t.Log("back to an earlier position on the same source")
	checkRecords(t, readRange(t, src, 10, 20, 1), want[9:20])
	t.Log("one record")
	checkRecords(t, readRange(t, src, log.head, log.head, 10), want[log.head-1:])
}

func TestSourceNextWaitsForRecords(t *testing.T) {
	t.Parallel()
	store, ledger, log, relay := publishedLog(t, 50)
	src := newSource(t, store, ledger)
	readRange(t, src, 1, log.head, 100)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	recs, err := src.Next(ctx, log.head+1, 100)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || len(recs) != 0 {
		t.Fatalf("Next past the head: got %d records, error %v; want none, %v", len(recs), err, context.DeadlineExceeded)
	}

	from := log.head + 1
	log.append(10)
	relay.Wake()
	got := readRange(t, src, from, log.head, 100)
	checkRecords(t, got, readLog(t, store, ledger)[from-1:])
}

// waitBuffered waits until src's consumer has delivered n frames it has
// not taken yet.
func waitBuffered(t *testing.T, src *natsbus.Source, n int) {
	t.Helper()
	testenv.Eventually(t, relayWaitMax, func() error {
		if got := natsbus.Buffered(src); got < n {
			return fmt.Errorf("%d frames buffered, want %d", got, n)
		}
		return nil
	})
}

// TestSourceGrowsPendingOnce: the frames that have arrived by a Next are
// parsed into one array sized from their headers, not grown frame by frame
// (each growth copied the records parsed so far, and left room past them):
// what a Next leaves pending has no more room past it than the
// allocation's rounding.
func TestSourceGrowsPendingOnce(t *testing.T) {
	t.Parallel()
	store, ledger, log, _ := publishedLog(t, 300) // six frames of 50
	want := readLog(t, store, ledger)
	src := newSource(t, store, ledger)
	checkRecords(t, readRange(t, src, 1, 1, 1), want[:1])
	waitBuffered(t, src, 5) // the other frames
	const max = 2*sourceFrameRecords + 20
	recs, err := src.Next(t.Context(), 2, max)
	testenv.NoError(t, err)
	checkRecords(t, recs, want[1:1+len(recs)])
	pending, room := natsbus.PendingRoom(src)
	if len(recs) != max || pending != 3*sourceFrameRecords-1-max {
		t.Fatalf("Next took %d records and left %d pending; want %d and %d: the frames had not all arrived",
			len(recs), pending, max, 3*sourceFrameRecords-1-max)
	}
	if room >= sourceFrameRecords/4 {
		t.Errorf("%d records of room past the %d pending: grown frame by frame", room, pending)
	}
	checkRecords(t, readRange(t, src, 2+max, log.head, 1000), want[1+max:])
}

func TestSourceFallsBackToLogAfterPurge(t *testing.T) {
	t.Parallel()
	store, ledger, log, relay := publishedLog(t, 300)
	want := readLog(t, store, ledger)
	stream, err := jetStream(t).Stream(t.Context(), natsbus.StreamName(ledger))
	testenv.NoError(t, err)

	t.Log("the stream lost positions 1..100 (its first frames)")
	testenv.NoError(t, stream.Purge(t.Context(), jetstream.WithPurgeSequence(100/sourceFrameRecords+1)))
	src := newSource(t, store, ledger)
	ctx, cancel := context.WithTimeout(t.Context(), relayWaitMax)
	defer cancel()
	recs, err := src.Next(ctx, 1, 500)
	testenv.NoError(t, err)
	// From the log, and only what the stream does not hold.
	checkRecords(t, recs, want[:100])
	checkRecords(t, readRange(t, src, 101, log.head, 500), want[100:])
	t.Log("again from 1 on the same source, a few at a time")
	checkRecords(t, readRange(t, src, 1, log.head, 7), want)

	t.Log("the stream lost everything")
	testenv.NoError(t, stream.Purge(t.Context()))
	src = newSource(t, store, ledger)
	checkRecords(t, readRange(t, src, 1, log.head, 64), want)
	t.Log("new records come from the stream")
	from := log.head + 1
	log.append(20)
	relay.Wake()
	checkRecords(t, readRange(t, src, from, log.head, 64), readLog(t, store, ledger)[from-1:])
}

func TestRelayGoesOnFromTheHeadOfAnExpiredStream(t *testing.T) {
	t.Parallel()
	store, ledger, log, relay := publishedLog(t, 100)
	js := jetStream(t)
	relay.stop()
	stream, err := js.Stream(t.Context(), natsbus.StreamName(ledger))
	testenv.NoError(t, err)
	t.Log("every frame expired; the log grew meanwhile")
	testenv.NoError(t, stream.Purge(t.Context()))
	log.append(50)
	purgedAt := log.head
	relay = startRelay(t, ledger, jetStream(t), store)
	// The relay goes on from the head it finds when it starts: append until
	// a frame shows it has.
	testenv.Eventually(t, relayWaitMax, func() error {
		log.append(5)
		relay.Wake()
		if last, err := streamLast(t.Context(), js, ledger); err != nil || last == 0 {
			return fmt.Errorf("no frame since the purge (%v)", err)
		}
		return nil
	})
	waitStreamAt(t, js, ledger, log.head)
	st, err := streamState(t.Context(), js, ledger)
	testenv.NoError(t, err)
	msg, err := stream.GetMsg(t.Context(), st.FirstSeq)
	testenv.NoError(t, err)
	var first uint64
	_, err = fmt.Sscan(msg.Header.Get(natsbus.HeaderFirst), &first)
	testenv.NoError(t, err)
	if first <= purgedAt {
		t.Fatalf("the restarted relay's first frame begins at %d, want after %d (the head it started from)", first, purgedAt)
	}
	t.Log("a source reads what the stream does not hold from the log, the rest from the stream")
	want := readLog(t, store, ledger)
	checkRecords(t, readRange(t, newSource(t, store, ledger), 1, log.head, 64), want)
	checkRecords(t, readRange(t, newSource(t, store, ledger), first-5, log.head, 1000), want[first-6:])
}

// TestSourceLookupOnlyNeverCreates: a source with LookupOnly reads a stream
// that exists and fails, creating nothing, when there is none.
func TestSourceLookupOnlyNeverCreates(t *testing.T) {
	t.Parallel()
	js := jetStream(t)
	ledger := testenv.Name(t)
	src := natsbus.NewSource(ledger, js, nil, natsbus.StreamOptions{LookupOnly: true}, testLogger(t))
	t.Cleanup(src.Close)
	if _, err := src.Next(t.Context(), 1, 10); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Next without a stream: %v, want jetstream.ErrStreamNotFound", err)
	}
	if _, err := js.Stream(t.Context(), natsbus.StreamName(ledger)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the stream after a LookupOnly source's Next: %v, want none made", err)
	}
}

// TestSourceBoundsTheBytesItHolds: frames that are not the relay's, each a
// compressed record of nearly a megabyte, are taken a few at a time (about
// sourceBytesMax held), not 8,192 records' worth at once, and still every
// position once, in order.
func TestSourceBoundsTheBytesItHolds(t *testing.T) {
	t.Parallel()
	const frames, payload = 40, 1000 << 10
	js, ledger := jetStream(t), testenv.Name(t)
	publishLargeRecords(t, js, ledger, frames, payload, func(recs []eventstore.Record) *nats.Msg {
		msg := natsbus.NewFrame(natsbus.Subject(ledger), recs)
		if len(msg.Data) > 100<<10 {
			t.Fatalf("a frame of %d bytes: want it compressed", len(msg.Data))
		}
		return msg
	})
	src := natsbus.NewSource(ledger, js, nil, natsbus.StreamOptions{LookupOnly: true}, testLogger(t))
	t.Cleanup(src.Close)
	if recs, err := src.Next(t.Context(), 1, 1); err != nil || len(recs) != 1 || recs[0].Position != 1 {
		t.Fatalf("Next from 1: %d records, %v; want position 1", len(recs), err)
	}
	// The consumer now buffers what the stream holds (up to
	// sourceFramesMax frames): a Next without the bound would take all
	// of them.
	waitBuffered(t, src, frames-1)
	next, most, calls := uint64(2), 0, 0
	for ; next <= frames; calls++ {
		recs, err := src.Next(t.Context(), next, 8192)
		testenv.NoError(t, err)
		for i := range recs {
			if recs[i].Position != next+uint64(i) || !recs[i].VerifyHash() {
				t.Fatalf("record %d at %d, hash holds %v", recs[i].Position, next+uint64(i), recs[i].VerifyHash())
			}
		}
		most = max(most, len(recs))
		next += uint64(len(recs))
	}
	// 17 frames fill 16 MiB; fewer than 12 would be a bound far tighter.
	if most > 17 || most < 12 {
		t.Fatalf("at most %d records of %d bytes a Next; want 12 to 17 (16 MiB held, and one frame beyond)", most, payload)
	}
	// What is handed out is no longer held: the rest comes as fast (17,
	// 17 and 5 records).
	if calls > 4 {
		t.Fatalf("%d calls of Next for %d frames: what was handed out still counts as held", calls, frames-1)
	}
}

// TestSourceBoundsTheFramesBytesItQueues: plain frames of a record of
// nearly a megabyte each (a relay with plain frames, a period's close over
// thousands of assets) queue between the stream and the reader up to
// sourceFramesBytesMax, not sourceFramesMax frames of them (64 MB), and
// still every position comes once, in order.
func TestSourceBoundsTheFramesBytesItQueues(t *testing.T) {
	t.Parallel()
	const frames, payload = 40, 1000 << 10
	js, ledger := jetStream(t), testenv.Name(t)
	publishLargeRecords(t, js, ledger, frames, payload, func(recs []eventstore.Record) *nats.Msg {
		return natsbus.NewPlainFrame(natsbus.Subject(ledger), recs)
	})
	src := natsbus.NewSource(ledger, js, nil, natsbus.StreamOptions{LookupOnly: true}, testLogger(t))
	t.Cleanup(src.Close)
	if recs, err := src.Next(t.Context(), 1, 1); err != nil || len(recs) != 1 || recs[0].Position != 1 {
		t.Fatalf("Next from 1: %d records, %v; want position 1", len(recs), err)
	}
	// The consumer fills the queue as far as it may, and no further.
	most := natsbus.SourceFramesBytesMax / payload
	waitBuffered(t, src, most)
	time.Sleep(500 * time.Millisecond)
	if n := natsbus.Buffered(src); n > most {
		t.Fatalf("%d frames of %d bytes queued, want at most %d (%d bytes)", n, payload, most, natsbus.SourceFramesBytesMax)
	}
	for next := uint64(2); next <= frames; {
		recs, err := src.Next(t.Context(), next, 8192)
		testenv.NoError(t, err)
		for i := range recs {
			if recs[i].Position != next+uint64(i) || !recs[i].VerifyHash() {
				t.Fatalf("record %d at %d, hash holds %v", recs[i].Position, next+uint64(i), recs[i].VerifyHash())
			}
		}
		next += uint64(len(recs))
	}
}

// publishLargeRecords makes ledger's stream and publishes records 1 to n,
// sealed, each of payload bytes, a frame each as frame makes it.
func publishLargeRecords(t *testing.T, js jetstream.JetStream, ledger string, n, payload int,
	frame func([]eventstore.Record) *nats.Msg) {
	t.Helper()
	_, err := natsbus.EnsureStream(t.Context(), js, ledger, natsbus.StreamOptions{})
	testenv.NoError(t, err)
	var prev eventstore.Hash
	for i := range n {
		rec := eventstore.Record{Ledger: ledger, Position: uint64(i + 1), Type: "TransferCommitted", SchemaVersion: 1,
			CommandID: "c", Payload: []byte(`{"x":"` + strings.Repeat("a", payload) + `"}`)}
		rec.Seal(prev)
		prev = rec.Hash
		_, err := js.PublishMsg(t.Context(), frame([]eventstore.Record{rec}))
		testenv.NoError(t, err)
	}
}

// TestSourceCloseLetsGoOfWhatItReadAhead: a closed source holds none of
// the records it read ahead (a webhook subscription closes its source
// while its endpoint fails: a frame's records, up to 8,192, held for
// nothing), and reads on from where it is asked afterwards.
func TestSourceCloseLetsGoOfWhatItReadAhead(t *testing.T) {
	t.Parallel()
	store, ledger, log, _ := publishedLog(t, 100)
	want := readLog(t, store, ledger)
	src := newSource(t, store, ledger)
	checkRecords(t, readRange(t, src, 1, 5, 5), want[:5])
	if pending, _ := natsbus.PendingRoom(src); pending == 0 {
		t.Fatal("nothing pending after 5 records of a frame of 50: the test reads nothing ahead")
	}
	src.Close()
	if pending, room := natsbus.PendingRoom(src); pending != 0 || room != 0 {
		t.Errorf("closed: %d records pending and room for %d more, want none", pending, room)
	}
	checkRecords(t, readRange(t, src, 6, log.head, 30), want[5:])
}

// TestSourceRefusesAHoleInTheStream: a stream missing positions between
// two frames (a message deleted from it) is a gap, said at once, as
// before a fresh source learnt to read what an emptied stream no longer
// holds from the log: that restart, taken again and again here, made a
// consumer each time until the server's limit.
func TestSourceRefusesAHoleInTheStream(t *testing.T) {
	t.Parallel()
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	_, err := natsbus.EnsureStream(t.Context(), js, ledger, natsbus.StreamOptions{})
	testenv.NoError(t, err)
	for _, span := range [][2]uint64{{1, 3}, {6, 8}} {
		var recs []eventstore.Record
		for p := span[0]; p <= span[1]; p++ {
			recs = append(recs, eventstore.Record{Ledger: ledger, Position: p, Type: "t", Payload: []byte("{}")})
		}
		_, err := js.PublishMsg(t.Context(), natsbus.NewFrame(natsbus.Subject(ledger), recs))
		testenv.NoError(t, err)
	}
	src := newSource(t, store, ledger)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = src.Next(ctx, 4, 10)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "want 4 next") {
		t.Fatalf("Next(4) on frames 1..3 and 6..8: %v, want the gap at once", err)
	}
}
