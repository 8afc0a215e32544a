package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// relayWaitMax bounds every wait for the relay to catch up with the log.
const relayWaitMax = 15 * time.Second

// openStore returns the event store on a fresh database, migrated.
func openStore(t *testing.T) *eventstore.Store {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	return eventstore.New(pool)
}

// jetStream returns a new connection to the package's NATS server: one per
// relay or source, as if each ran in its own process.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return js
}

// testLogger writes to the test's output, which is shown on failure or -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testLog appends hand-built, sealed, valid records to one ledger's log, as
// a writer would: an asset, two accounts, then one transfer per record.
type testLog struct {
	t      *testing.T
	store  *eventstore.Store
	ledger string
	head   uint64
	hash   eventstore.Hash
}

func newTestLog(t *testing.T, store *eventstore.Store, ledger string) *testLog {
	return &testLog{t: t, store: store, ledger: ledger}
}

// testLogAppendMax bounds one append of the test log, as the writer's batch does.
const testLogAppendMax = 2000

// append appends n records in appends of at most testLogAppendMax.
func (l *testLog) append(n int) {
	l.t.Helper()
	for n > 0 {
		size := min(n, testLogAppendMax)
		l.appendOnce(size)
		n -= size
	}
}

// appendOnce appends n records in one append and returns them.
func (l *testLog) appendOnce(n int) []eventstore.Record {
	l.t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	recs := make([]eventstore.Record, n)
	prev := l.hash
	for i := range recs {
		pos := l.head + uint64(i) + 1
		e, id := testEvent(pos, now)
		payload, err := domain.MarshalEvent(e)
		testenv.NoError(l.t, err)
		recs[i] = eventstore.Record{Ledger: l.ledger, Position: pos, Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: now, CommandID: id, Payload: payload}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	testenv.NoError(l.t, l.store.Append(l.t.Context(), l.ledger, l.head, l.hash, recs))
	l.head, l.hash = recs[n-1].Position, recs[n-1].Hash
	return recs
}

// appendEvent appends e, whose command id is id, as the next record, and
// returns it.
func (l *testLog) appendEvent(e domain.Event, id string) eventstore.Record {
	l.t.Helper()
	r := eventstore.Record{Ledger: l.ledger, Position: l.head + 1, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
		RecordedAt: time.Now().UTC().Truncate(time.Microsecond), CommandID: id, Payload: domain.AppendEvent(nil, e)}
	r.Seal(l.hash)
	testenv.NoError(l.t, l.store.Append(l.t.Context(), l.ledger, l.head, l.hash, []eventstore.Record{r}))
	l.head, l.hash = r.Position, r.Hash
	return r
}

func testEvent(pos uint64, now time.Time) (domain.Event, string) {
	switch pos {
	case 1:
		return domain.AssetDefined{Code: "USD", Scale: 2}, "USD"
	case 2:
		return domain.AccountOpened{ID: "cash", Asset: "USD", Normal: domain.SideDebit}, "cash"
	case 3:
		return domain.AccountOpened{ID: "revenue", Asset: "USD", Normal: domain.SideCredit}, "revenue"
	}
	id := fmt.Sprintf("t-%d", pos)
	return domain.TransferCommitted{ID: id, EffectiveAt: now, Postings: []domain.Posting{{
		Debit: "cash", Credit: "revenue", Asset: "USD",
		Amount: domain.Amount{Units: domain.UnitsFromInt64(int64(pos)), Scale: 2},
	}}}, id
}

// readLog returns every record of ledger's log.
func readLog(t *testing.T, store *eventstore.Store, ledger string) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	for {
		recs, err := store.Read(t.Context(), ledger, uint64(len(all))+1, eventstore.ReadMax)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

// runningRelay is a relay running in its own goroutine until stop.
type runningRelay struct {
	*natsbus.Relay
	stop func()
}

// startRelay runs a relay for ledger until stop or the end of the test.
func startRelay(t *testing.T, ledger string, js jetstream.JetStream, log natsbus.Log) *runningRelay {
	t.Helper()
	return startRelayPolling(t, ledger, js, log, 0)
}

// startRelayPolling is startRelay with the relay's poll interval set to
// poll (0: the default): a test that a poll would pass sets it long.
func startRelayPolling(t *testing.T, ledger string, js jetstream.JetStream, log natsbus.Log, poll time.Duration) *runningRelay {
	t.Helper()
	return startRelayOpts(t, ledger, js, log, poll, natsbus.StreamOptions{})
}

// startRelayOpts is startRelayPolling with the stream's options.
func startRelayOpts(t *testing.T, ledger string, js jetstream.JetStream, log natsbus.Log, poll time.Duration,
	opts natsbus.StreamOptions) *runningRelay {
	t.Helper()
	r := natsbus.NewRelay(ledger, js, log, opts, testLogger(t))
	if poll > 0 {
		natsbus.SetPollInterval(r, poll)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningRelay{Relay: r, stop: stop}
}

// streamState returns the state of ledger's stream; an error before a relay
// has created it.
func streamState(ctx context.Context, js jetstream.JetStream, ledger string) (jetstream.StreamState, error) {
	s, err := js.Stream(ctx, natsbus.StreamName(ledger))
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// streamLast returns the last position ledger's stream holds (its last
// frame's), 0 when it holds none.
func streamLast(ctx context.Context, js jetstream.JetStream, ledger string) (uint64, error) {
	s, err := js.Stream(ctx, natsbus.StreamName(ledger))
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	msg, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0, err
	}
	var last uint64
	if _, err := fmt.Sscan(msg.Header.Get(natsbus.HeaderLast), &last); err != nil {
		return 0, fmt.Errorf("frame %d: %s: %w", info.State.LastSeq, natsbus.HeaderLast, err)
	}
	return last, nil
}

// waitStreamAt waits until ledger's stream ends at position head.
func waitStreamAt(t *testing.T, js jetstream.JetStream, ledger string, head uint64) {
	t.Helper()
	testenv.Eventually(t, relayWaitMax, func() error {
		last, err := streamLast(t.Context(), js, ledger)
		if err != nil {
			return err
		}
		if last != head {
			return fmt.Errorf("stream ends at position %d, want %d", last, head)
		}
		return nil
	})
}

// checkStream checks that ledger's stream holds exactly the log: frames at
// sequences 1, 2, ..., each with its de-duplication id, whose records are
// the log's, every position once, in order.
func checkStream(t *testing.T, js jetstream.JetStream, store *eventstore.Store, ledger string) {
	t.Helper()
	want := readLog(t, store, ledger)
	st, err := streamState(t.Context(), js, ledger)
	testenv.NoError(t, err)
	if st.Msgs == 0 || st.FirstSeq != 1 || st.LastSeq != st.Msgs {
		t.Fatalf("stream has %d frames, sequences %d..%d; want 1..%d", st.Msgs, st.FirstSeq, st.LastSeq, st.Msgs)
	}
	stream, err := js.Stream(t.Context(), natsbus.StreamName(ledger))
	testenv.NoError(t, err)
	cons, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	testenv.NoError(t, err)
	var seq, pos uint64
	for seq < st.Msgs {
		// Never ask for more than remains: Fetch waits for a full batch.
		batch, err := cons.Fetch(int(min(1000, st.Msgs-seq)), jetstream.FetchMaxWait(5*time.Second))
		testenv.NoError(t, err)
		got := 0
		for msg := range batch.Messages() {
			got++
			seq++
			pos = checkFrame(t, msg, ledger, seq, pos, want)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetch after sequence %d: %v", seq, err)
		}
		if got == 0 {
			t.Fatalf("fetch after sequence %d returned nothing, want %d frames", seq, st.Msgs)
		}
	}
	if pos != uint64(len(want)) {
		t.Fatalf("the stream's frames end at position %d, the log at %d", pos, len(want))
	}
}

// checkFrame checks the frame at sequence seq: it continues after position
// prev with the log's records (want), and returns its last position.
func checkFrame(t *testing.T, msg jetstream.Msg, ledger string, seq, prev uint64, want []eventstore.Record) uint64 {
	t.Helper()
	meta, err := msg.Metadata()
	testenv.NoError(t, err)
	if meta.Sequence.Stream != seq {
		t.Fatalf("frame %d has stream sequence %d", seq, meta.Sequence.Stream)
	}
	var first, last uint64
	if _, err := fmt.Sscan(msg.Headers().Get(natsbus.HeaderFirst), &first); err != nil {
		t.Fatalf("frame %d: %s: %v", seq, natsbus.HeaderFirst, err)
	}
	if _, err := fmt.Sscan(msg.Headers().Get(natsbus.HeaderLast), &last); err != nil {
		t.Fatalf("frame %d: %s: %v", seq, natsbus.HeaderLast, err)
	}
	if first != prev+1 || last < first || last > uint64(len(want)) {
		t.Fatalf("frame %d holds positions %d..%d after %d (log head %d)", seq, first, last, prev, len(want))
	}
	if got, wantID := msg.Headers().Get(jetstream.MsgIDHeader), fmt.Sprintf("%s:%d-%d", ledger, first, last); got != wantID {
		t.Fatalf("frame %d: %s = %q, want %q", seq, jetstream.MsgIDHeader, got, wantID)
	}
	recs, err := natsbus.ParseFrame(ledger, first, last, msg.Data())
	testenv.NoError(t, err)
	for i := range recs {
		rec := &recs[i]
		if !rec.VerifyHash() {
			t.Fatalf("frame %d, position %d: hash does not match its content", seq, rec.Position)
		}
		if w := &want[rec.Position-1]; !sameRecord(w, rec) {
			t.Fatalf("frame %d, position %d differs from the log (-log +message):\n%s", seq, rec.Position, cmp.Diff(*w, *rec))
		}
	}
	return last
}

// sameRecord is cmp.Equal for records, at a fraction of its cost on
// thousands of them under -race.
func sameRecord(a, b *eventstore.Record) bool {
	return a.Ledger == b.Ledger && a.Position == b.Position && a.Type == b.Type &&
		a.SchemaVersion == b.SchemaVersion && a.RecordedAt.Equal(b.RecordedAt) && a.CommandID == b.CommandID &&
		bytes.Equal(a.Payload, b.Payload) && a.PrevHash == b.PrevHash && a.Hash == b.Hash
}

func TestRelayStreamHoldsTheLog(t *testing.T) {
	t.Parallel()
	store, ledger := openStore(t), testenv.Name(t)
	log := newTestLog(t, store, ledger)
	log.append(100) // the relay starts on a log that already has records
	relay := startRelay(t, ledger, jetStream(t), store)
	for range 8 {
		log.append(50)
		relay.Wake()
	}
	js := jetStream(t)
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
}

// A rolling upgrade: a relay of plain frames (StreamPlainFrames), then one
// of compressed frames on the same stream. Every frame says which it is,
// and a reader takes both: the stream holds the log, every position once.
func TestRelayPlainThenCompressedFrames(t *testing.T) {
	t.Parallel()
	store, ledger := openStore(t), testenv.Name(t)
	log := newTestLog(t, store, ledger)
	log.append(60)
	js := jetStream(t)
	plain := startRelayOpts(t, ledger, js, store, 0, natsbus.StreamOptions{PlainFrames: true})
	waitStreamAt(t, js, ledger, log.head)
	plain.stop()
	plainFrames, err := streamState(t.Context(), js, ledger)
	testenv.NoError(t, err)
	log.append(60)
	startRelay(t, ledger, js, store)
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
	stream, err := js.Stream(t.Context(), natsbus.StreamName(ledger))
	testenv.NoError(t, err)
	st, err := streamState(t.Context(), js, ledger)
	testenv.NoError(t, err)
	for seq := uint64(1); seq <= st.LastSeq; seq++ {
		msg, err := stream.GetMsg(t.Context(), seq)
		testenv.NoError(t, err)
		want := "LGF\x02"
		if seq <= plainFrames.LastSeq {
			want = "LGF\x01"
		}
		if got := string(msg.Data[:4]); got != want {
			t.Fatalf("frame %d begins %q, want %q (plain frames up to %d)", seq, got, want, plainFrames.LastSeq)
		}
	}
}

// countingLog counts the reads of the log it passes on.
type countingLog struct {
	natsbus.Log
	reads atomic.Int64
}

func (c *countingLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	c.reads.Add(1)
	return c.Log.Read(ctx, ledger, from, limit)
}

// Records offered by the writer are published without reading the log back
// (it read an empty page after every append); a record committed but not
// offered is still read from the log, before the offered ones after it.
func TestRelayPublishesOffersWithoutReadingTheLog(t *testing.T) {
	t.Parallel()
	const rounds = 10
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	log := newTestLog(t, store, ledger)
	log.append(10)
	counting := &countingLog{Log: store}
	// No poll within the test: every read counted is one the relay chose.
	relay := startRelayPolling(t, ledger, jetStream(t), counting, time.Hour)
	waitStreamAt(t, js, ledger, log.head)
	before := counting.reads.Load()
	for range rounds {
		relay.Offer(log.appendOnce(20))
		waitStreamAt(t, js, ledger, log.head)
	}
	// The relay read the log once per append before. Now at most the
	// reads that follow the first publishing (the empty read after it, and
	// one more if the first append landed while it ran) remain.
	if n := counting.reads.Load() - before; n > 3 {
		t.Errorf("%d reads of the log while %d appends were offered, want at most 3", n, rounds)
	}
	log.appendOnce(20) // committed, never offered
	relay.Offer(log.appendOnce(20))
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
}

// An append's announcement (LISTEN/NOTIFY) wakes the relay before the
// writer's offer of it: once a read of the log got ahead of the offers, the
// relay read the log twice per append from then on (an empty read when
// each late offer came). It goes back to the offers as soon as they catch
// up with what it read, and skips the announcements' wakes while they come.
func TestRelayBackInStepAfterReadingAheadOfTheOffers(t *testing.T) {
	t.Parallel()
	const (
		rounds = 10
		// poll is long enough for a round, short enough for the test to
		// wait for it once.
		poll = 3 * time.Second
	)
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	log := newTestLog(t, store, ledger)
	log.append(10)
	counting := &countingLog{Log: store}
	relay := startRelayPolling(t, ledger, jetStream(t), counting, poll)
	waitStreamAt(t, js, ledger, log.head)
	// The announcement first: the relay reads the append from the log
	// before it is offered.
	recs := log.appendOnce(20)
	relay.Wake()
	waitStreamAt(t, js, ledger, log.head)
	relay.Offer(recs)
	before := counting.reads.Load()
	for range rounds {
		recs := log.appendOnce(20)
		wakeTaken(t, relay)
		relay.Offer(recs)
		waitStreamAt(t, js, ledger, log.head)
	}
	if n := counting.reads.Load() - before; n > 2 {
		t.Errorf("%d reads of the log while %d announced appends were offered, want at most 2", n, rounds)
	}
	// Another process's append, announced and never offered: read once the
	// offers have been silent for the poll interval.
	log.appendOnce(20)
	wakeTaken(t, relay)
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
}

// wakeTaken wakes the relay and waits until it has taken the wake.
func wakeTaken(t *testing.T, relay *runningRelay) {
	t.Helper()
	relay.Wake()
	testenv.Eventually(t, relayWaitMax, func() error {
		if !natsbus.WakeTaken(relay.Relay) {
			return errors.New("the relay has not taken the wake")
		}
		return nil
	})
}

// heldLog holds the relay inside its read of the log from position from,
// once, after the read queried the store: what is offered meanwhile is
// there when the relay goes on.
type heldLog struct {
	natsbus.Log
	from       uint64
	once       sync.Once
	held, hold chan struct{}
}

func (h *heldLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	recs, err := h.Log.Read(ctx, ledger, from, limit)
	if from == h.from {
		h.once.Do(func() {
			close(h.held)
			<-h.hold
		})
	}
	return recs, err
}

// An offer that did not fit (the offers are bounded) is read from the log
// as soon as the offers before it are published, not at the next poll.
func TestRelayReadsTheLogAfterADroppedOffer(t *testing.T) {
	t.Parallel()
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	log := newTestLog(t, store, ledger)
	log.append(10)
	published := readLog(t, store, ledger)
	held := &heldLog{Log: store, from: log.head + 1, held: make(chan struct{}), hold: make(chan struct{})}
	// No poll within the test: it would publish the dropped records late
	// but within the wait below.
	relay := startRelayPolling(t, ledger, jetStream(t), held, time.Hour)
	<-held.held // the relay published the ten and found nothing more
	a, b := log.appendOnce(20), log.appendOnce(20)
	// Records already published fill the offers up to a, which just fits
	// (the relay skips them); b does not fit and is dropped.
	filler := make([]eventstore.Record, 0, natsbus.RelayOfferedMax-len(a))
	for len(filler) < cap(filler) {
		filler = append(filler, published[len(filler)%len(published)])
	}
	relay.Offer(filler)
	relay.Offer(a)
	relay.Offer(b)
	close(held.hold)
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
}

// pagedLog reads at most pageMax records a call, so that the relay publishes
// a long log in many batches and a test can stop it while it is under way.
type pagedLog struct {
	log     natsbus.Log
	pageMax int
}

func (p pagedLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	return p.log.Read(ctx, ledger, from, min(limit, p.pageMax))
}

func (p pagedLog) Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error) {
	return p.log.Head(ctx, ledger)
}

func TestRelayStoppedMidwayAndRestarted(t *testing.T) {
	t.Parallel()
	const (
		total   = 5000
		pageMax = 250
	)
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	log := newTestLog(t, store, ledger)
	log.append(total)

	first := startRelay(t, ledger, jetStream(t), pagedLog{log: store, pageMax: pageMax})
	testenv.Eventually(t, relayWaitMax, func() error {
		last, err := streamLast(t.Context(), js, ledger)
		if err != nil {
			return err
		}
		if last == 0 || last >= total/2 {
			return fmt.Errorf("stream ends at position %d, want 1..%d", last, total/2-1)
		}
		return nil
	})
	first.stop()
	last, err := streamLast(t.Context(), js, ledger)
	testenv.NoError(t, err)
	// At most the page being published when stopped lands after the check.
	if last >= total/2+pageMax {
		t.Fatalf("stopped relay left the stream at %d, want below %d", last, total/2+pageMax)
	}
	t.Logf("relay stopped with the stream at position %d of %d", last, total)

	log.append(500)
	second := startRelay(t, ledger, jetStream(t), store)
	second.Wake()
	waitStreamAt(t, js, ledger, log.head)
	checkStream(t, js, store, ledger)
}

func TestTwoRelaysNeverDuplicate(t *testing.T) {
	t.Parallel()
	store, ledger, js := openStore(t), testenv.Name(t), jetStream(t)
	log := newTestLog(t, store, ledger)
	// Both start on an empty log: both create the stream.
	a := startRelay(t, ledger, jetStream(t), store)
	b := startRelay(t, ledger, jetStream(t), store)
	for range 30 {
		log.append(100)
		a.Wake()
		b.Wake()
	}
	waitStreamAt(t, js, ledger, log.head)
	a.stop()
	b.stop()
	checkStream(t, js, store, ledger)
}
