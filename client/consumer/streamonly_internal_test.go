package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
	_, js := connect(t)
	log := &streamOnly{js: js}
	frame := func(ledger string, first, last uint64) { publish(t, js, ledger, first, last) }
	read := func(ledger string, from uint64) error {
		t.Helper()
		recs, err := log.Read(ctx, ledger, from, 10)
		if len(recs) != 0 {
			t.Fatalf("read %d records from a log that has none", len(recs))
		}
		return err
	}

	fresh := testenv.Name(t) + "_fresh"
	_, err := natsbus.EnsureStream(ctx, js, fresh, natsbus.StreamOptions{})
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

// A consumer without the log, behind a stream whose every frame expired
// (an idle ledger past the stream's MaxAge; here purged): it waits, and
// when the next frame comes and begins after its position, it stops with
// ErrNotInStream, the error a supervisor acts on (set Config.Audit), not a
// generic gap.
func TestStreamOnlyStopsWhenItsPositionsExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, js := connect(t)
	ledger := testenv.Name(t)
	s, err := natsbus.EnsureStream(ctx, js, ledger, natsbus.StreamOptions{})
	testenv.NoError(t, err)
	publish(t, js, ledger, 1, 3)
	testenv.NoError(t, s.Purge(ctx))

	c, err := New(Config{Ledger: ledger, NATS: nc})
	testenv.NoError(t, err)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx, Checkpoint{}, func(context.Context, Event) error { return nil }) }()
	select {
	case err := <-done:
		t.Fatalf("stopped before the next frame: %v", err)
	case <-time.After(500 * time.Millisecond): // waiting: the stream is empty
	}
	publish(t, js, ledger, 4, 4)
	if err := <-done; !errors.Is(err, ErrNotInStream) {
		t.Errorf("positions 1..3 expired, the next frame at 4: %v, want ErrNotInStream", err)
	}
}

// connect connects to the tests' NATS.
func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := NATSOptions{URL: testenv.NATSURL(t)}.Connect()
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return nc, js
}

// publish publishes, as the relay does, a frame of ledger's positions
// first..last.
func publish(t *testing.T, js jetstream.JetStream, ledger string, first, last uint64) {
	t.Helper()
	var recs []eventstore.Record
	for p := first; p <= last; p++ {
		recs = append(recs, eventstore.Record{Ledger: ledger, Position: p, Type: "t", Payload: []byte("{}")})
	}
	_, err := js.PublishMsg(context.Background(), natsbus.NewFrame(natsbus.Subject(ledger), recs))
	testenv.NoError(t, err)
}
