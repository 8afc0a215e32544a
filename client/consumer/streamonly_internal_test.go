package consumer

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// A consumer without the log found the stream empty; the relay publishes
// before the source asks the log. The position is in the stream now: it
// must be waited on there, not refused (the run used to end with
// ErrNotInStream, and a consumer started before a ledger's first events
// never applied any).
func TestStreamOnlyWaitsForWhatTheStreamHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, err := NATSOptions{URL: testenv.NATSURL(t)}.Connect()
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	log := &streamOnly{js: js}

	frame := func(ledger string, first, last uint64) {
		t.Helper()
		var recs []eventstore.Record
		for p := first; p <= last; p++ {
			recs = append(recs, eventstore.Record{Ledger: ledger, Position: p, Type: "t", Payload: []byte("{}")})
		}
		_, err := js.PublishMsg(ctx, natsbus.NewFrame(natsbus.Subject(ledger), recs))
		testenv.NoError(t, err)
	}
	read := func(ledger string, from uint64) error {
		t.Helper()
		recs, err := log.Read(ctx, ledger, from, 10)
		if len(recs) != 0 {
			t.Fatalf("read %d records from a log that has none", len(recs))
		}
		return err
	}

	fresh := testenv.Name(t) + "_fresh"
	_, err = natsbus.EnsureStream(ctx, js, fresh, natsbus.StreamOptions{})
	testenv.NoError(t, err)
	if err := read(fresh, 1); err != nil {
		t.Fatalf("empty stream: %v, want a wait", err)
	}
	frame(fresh, 1, 3)
	if err := read(fresh, 1); err != nil {
		t.Fatalf("a stream that begins at the position: %v, want a wait", err)
	}

	// A stream begun after the position (a new stream on an old ledger).
	late := testenv.Name(t) + "_late"
	_, err = natsbus.EnsureStream(ctx, js, late, natsbus.StreamOptions{})
	testenv.NoError(t, err)
	frame(late, 5, 6)
	if err := read(late, 2); !errors.Is(err, ErrNotInStream) {
		t.Fatalf("a stream that begins at 5, read at 2: %v, want ErrNotInStream", err)
	}
	if err := read(late, 5); err != nil {
		t.Fatalf("a stream that begins at 5, read at 5: %v, want a wait", err)
	}
}
