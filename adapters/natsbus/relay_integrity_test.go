package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// earlierLog is the log as a database restored from an earlier copy holds
// it: nothing past head.
type earlierLog struct {
	log  natsbus.Log
	head uint64
}

func (l earlierLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	if from > l.head {
		return nil, nil
	}
	return l.log.Read(ctx, ledger, from, int(min(uint64(limit), l.head-from+1)))
}

func (l earlierLog) Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error) {
	recs, err := l.log.Read(ctx, ledger, l.head, 1)
	if err != nil || len(recs) == 0 {
		return 0, eventstore.Hash{}, err
	}
	return l.head, recs[0].Hash, nil
}

// faultsSeen records what a relay tells its natsbus.Faults.
type faultsSeen struct {
	mu       sync.Mutex
	diverged error
	inStep   int
}

func (f *faultsSeen) StreamDiverged(_ context.Context, _ string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.diverged = err
}

func (f *faultsSeen) StreamInStep(context.Context, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.diverged, f.inStep = nil, f.inStep+1
}

func (f *faultsSeen) state() (inStep int, diverged error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inStep, f.diverged
}

// TestRelayRefusesAStreamThatIsNotTheLogs: a stream ahead of the log, one
// whose last event is another than the log's, and one that ends in a message
// that is no frame are each reported and never published on; once the
// stream is recreated, the relay fills it with the log.
func TestRelayRefusesAStreamThatIsNotTheLogs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// spoil makes the stream, which holds the log's first 20 records,
		// not the log's; it returns the log the relay then reads.
		spoil  func(t *testing.T, js *testStream, log *testLog) natsbus.Log
		reason string
	}{
		{"ahead of a restored log", func(t *testing.T, _ *testStream, log *testLog) natsbus.Log {
			return earlierLog{log: log.store, head: 12}
		}, "the stream reaches position 20, the log only 12"},
		{"another event at the log's position", func(t *testing.T, s *testStream, log *testLog) natsbus.Log {
			forged := readLog(t, log.store, log.ledger)[19]
			forged.Position, forged.CommandID = 21, "forged"
			forged.Seal(log.hash)
			s.publish(t, natsbus.NewFrame(natsbus.Subject(log.ledger), []eventstore.Record{forged}))
			log.append(5) // the log's own 21 comes after
			return log.store
		}, "the stream's event at 21 has hash"},
		{"a frame of the log's replayed", func(t *testing.T, s *testStream, log *testLog) natsbus.Log {
			s.publish(t, natsbus.NewFrame(natsbus.Subject(log.ledger), readLog(t, log.store, log.ledger)[2:3]))
			return log.store
		}, "the one before does not end at 2"},
		{"a message that is no frame", func(t *testing.T, s *testStream, log *testLog) natsbus.Log {
			s.publish(t, &nats.Msg{Subject: natsbus.Subject(log.ledger), Data: []byte("hello")})
			return log.store
		}, "malformed frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store, ledger := openStore(t), testenv.Name(t)
			js := jetStream(t)
			log := newTestLog(t, store, ledger)
			log.append(20)
			first := startRelay(t, ledger, jetStream(t), store)
			waitStreamAt(t, js, ledger, 20)
			first.stop()
			s := &testStream{js: js}
			readFrom := tc.spoil(t, s, log)
			stuck, err := streamState(t.Context(), js, ledger)
			testenv.NoError(t, err)

			faults := &faultsSeen{}
			var out testenv.LockedBuffer
			logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			second := natsbus.NewRelay(ledger, jetStream(t), readFrom, natsbus.StreamOptions{}, logger).WithFaults(faults)
			stop := startRun(t, second.Run)
			const told = `msg="relay stopped: the stream is not the log's`
			testenv.Eventually(t, relayWaitMax, func() error {
				if _, err := faults.state(); err == nil || !errors.Is(err, natsbus.ErrStreamDiverged) || !strings.Contains(err.Error(), tc.reason) {
					return fmt.Errorf("told %v, want ErrStreamDiverged with %q", err, tc.reason)
				}
				// Tried again: the same divergence is not an ERROR again.
				if !strings.Contains(out.String(), "level=DEBUG "+told) {
					return fmt.Errorf("the divergence not tried again yet:\n%s", out.String())
				}
				return nil
			})
			if n := strings.Count(out.String(), "level=ERROR "+told); n != 1 {
				t.Errorf("the divergence logged at ERROR %d times, want once:\n%s", n, out.String())
			}
			second.Wake()
			if st, err := streamState(t.Context(), js, ledger); err != nil || st.LastSeq != stuck.LastSeq {
				t.Fatalf("stream at sequence %d (%v) after the relay found it diverged, want %d: published on top", st.LastSeq, err, stuck.LastSeq)
			}
			stop()

			testenv.NoError(t, natsbus.NewStreams(js, natsbus.StreamOptions{}).Recreate(t.Context(), ledger))
			third := natsbus.NewRelay(ledger, jetStream(t), store, natsbus.StreamOptions{}, testLogger(t)).WithFaults(faults)
			startRun(t, third.Run)
			waitStreamAt(t, js, ledger, log.head)
			checkStream(t, js, store, ledger)
			if inStep, err := faults.state(); err != nil || inStep == 0 {
				t.Errorf("after the repair: told %v, in step %d times; want in step", err, inStep)
			}
		})
	}
}

// testStream publishes on a ledger's subject as anyone who reaches NATS
// could, outside the relay.
type testStream struct{ js jetstream.JetStream }

func (s *testStream) publish(t *testing.T, msg *nats.Msg) {
	t.Helper()
	_, err := s.js.PublishMsg(t.Context(), msg)
	testenv.NoError(t, err)
}

// startRun runs run until the returned stop or the end of the test.
func startRun(t *testing.T, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// switchedLog reads ledger's log until switched, then another ledger's under
// its name: a database restored from another copy while the relay runs.
type switchedLog struct {
	natsbus.Log
	other    string
	switched atomic.Bool
}

func (l *switchedLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	if !l.switched.Load() {
		return l.Log.Read(ctx, ledger, from, limit)
	}
	recs, err := l.Log.Read(ctx, l.other, from, limit)
	for i := range recs {
		recs[i].Ledger = ledger
	}
	return recs, err
}

// TestRelayRefusesALogThatForksWhileItRuns: events the log holds past what
// the relay published, which do not follow the last event it published
// (prev_hash), are reported and not published: the stream never forks.
func TestRelayRefusesALogThatForksWhileItRuns(t *testing.T) {
	t.Parallel()
	store, ledger := openStore(t), testenv.Name(t)
	js := jetStream(t)
	newTestLog(t, store, ledger).append(20)
	other := newTestLog(t, store, ledger+"-fork")
	other.append(30)
	log := &switchedLog{Log: store, other: ledger + "-fork"}
	faults := &faultsSeen{}
	relay := natsbus.NewRelay(ledger, jetStream(t), log, natsbus.StreamOptions{}, testLogger(t)).WithFaults(faults)
	startRun(t, relay.Run)
	waitStreamAt(t, js, ledger, 20)
	before, err := streamState(t.Context(), js, ledger)
	testenv.NoError(t, err)
	log.switched.Store(true)
	relay.Wake()
	testenv.Eventually(t, relayWaitMax, func() error {
		if _, err := faults.state(); !errors.Is(err, natsbus.ErrStreamDiverged) || !strings.Contains(err.Error(), "the log's event at 21 follows hash") {
			return fmt.Errorf("told %v, want ErrStreamDiverged at 21", err)
		}
		return nil
	})
	if st, err := streamState(t.Context(), js, ledger); err != nil || st.LastSeq != before.LastSeq {
		t.Fatalf("stream at sequence %d (%v), want %d: the fork was published", st.LastSeq, err, before.LastSeq)
	}
}
