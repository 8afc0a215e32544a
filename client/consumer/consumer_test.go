package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// wait bounds the wait for a consumer to reach a position.
const wait = 60 * time.Second

// service is a downstream service's database with the inbox table and a
// table of what its handler saw.
type service struct {
	pool *pgxpool.Pool
}

func newService(t *testing.T) *service {
	t.Helper()
	pool, err := pgxpool.New(ledgerdtest.Ctx(t), testenv.PostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, consumer.Migrate(ledgerdtest.Ctx(t), pool))
	testenv.NoError(t, consumer.Migrate(ledgerdtest.Ctx(t), pool)) // twice: idempotent
	_, err = pool.Exec(ledgerdtest.Ctx(t), `CREATE TABLE seen (n bigserial PRIMARY KEY, position bigint NOT NULL,
		type text NOT NULL, command_id text NOT NULL)`)
	testenv.NoError(t, err)
	return &service{pool: pool}
}

// record is the handler that keeps each event in seen.
func record(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	if tc, ok := ev.Data.(domain.TransferCommitted); ok && tc.ID != ev.CommandID {
		return fmt.Errorf("TransferCommitted %s under command %s", tc.ID, ev.CommandID)
	}
	if ev.Data == nil {
		return fmt.Errorf("%s at %d: not decoded", ev.Type, ev.Position)
	}
	_, err := tx.Exec(ctx, `INSERT INTO seen (position, type, command_id) VALUES ($1, $2, $3)`, int64(ev.Position), ev.Type, ev.CommandID)
	return err
}

// checkpoint is the consumer's row.
func (s *service) checkpoint(t *testing.T, name, ledger string) uint64 {
	t.Helper()
	var pos int64
	err := s.pool.QueryRow(ledgerdtest.Ctx(t), `SELECT position FROM ledger_consumer_checkpoints WHERE consumer = $1 AND ledger = $2`,
		name, ledger).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	testenv.NoError(t, err)
	return uint64(pos)
}

// run runs RunPostgres in the background until the returned stop is called;
// stop returns what the run returned.
func run(t *testing.T, c *consumer.Consumer, s *service, name string, h consumer.TxHandler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := c.RunPostgres(ctx, s.pool, name, h)
		if ctx.Err() == nil { // ended on its own: say why, or reach waits blind
			t.Errorf("run %s ended: %v", name, err)
		}
		done <- err
	}()
	t.Cleanup(cancel)
	return func() error { cancel(); return <-done }
}

// reach waits until the consumer's checkpoint is at pos.
func (s *service) reach(t *testing.T, name, ledger string, pos uint64) {
	t.Helper()
	testenv.Eventually(t, wait, func() error {
		if got := s.checkpoint(t, name, ledger); got != pos {
			return fmt.Errorf("checkpoint at %d, want %d", got, pos)
		}
		return nil
	})
}

// checkSeen compares what the handler saw, in the order it saw it, with
// the ledger's log 1..head: each position once, in order, its type and
// command id.
func (s *service) checkSeen(t *testing.T, l *ledgerdtest.Ledgerd, ledger string, head uint64) {
	t.Helper()
	log := readLog(t, l, ledger)
	if uint64(len(log)) != head {
		t.Fatalf("the log holds %d events, want %d", len(log), head)
	}
	rows, err := s.pool.Query(ledgerdtest.Ctx(t), `SELECT position, type, command_id FROM seen ORDER BY n`)
	testenv.NoError(t, err)
	var got []string
	for rows.Next() {
		var (
			pos      int64
			typ, cmd string
		)
		testenv.NoError(t, rows.Scan(&pos, &typ, &cmd))
		got = append(got, fmt.Sprintf("%d %s %s", pos, typ, cmd))
	}
	testenv.NoError(t, rows.Err())
	for i, r := range log {
		want := fmt.Sprintf("%d %s %s", r.GetPosition(), r.GetType(), r.GetCommandId())
		if i >= len(got) {
			t.Fatalf("the handler saw %d events, want %d", len(got), len(log))
		}
		if got[i] != want {
			t.Fatalf("the handler's event %d: %q, want %q", i, got[i], want)
		}
	}
	if len(got) != len(log) {
		t.Fatalf("the handler saw %d events, want %d; after the log's: %q", len(got), len(log), got[len(log)])
	}
}

func readLog(t *testing.T, l *ledgerdtest.Ledgerd, ledger string) []*ledgerv1.LogEvent {
	t.Helper()
	stream, err := l.Audit.ReadEvents(ledgerdtest.Ctx(t), &ledgerv1.ReadEventsRequest{Ledger: ledger, FromPosition: 1})
	testenv.NoError(t, err)
	var out []*ledgerv1.LogEvent
	for {
		resp, err := stream.Recv()
		if err != nil {
			return out
		}
		out = append(out, resp.GetEvents()...)
	}
}

func natsConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := consumer.NATSOptions{URL: url}.Connect()
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func newConsumer(t *testing.T, cfg consumer.Config) *consumer.Consumer {
	t.Helper()
	c, err := consumer.New(cfg)
	testenv.NoError(t, err)
	return c
}

// flow creates n transfers between users 1..4 in requests of 1..size, so
// that the stream holds frames of several events, and returns the head.
func flow(t *testing.T, l *ledgerdtest.Ledgerd, ledger, prefix string, n, size int) uint64 {
	t.Helper()
	var head uint64
	for i := 0; i < n; {
		k := min(1+i%size, n-i)
		ts := make([]*ledgerv1.Transfer, 0, k)
		for j := range k {
			id := i + j
			ts = append(ts, ledgerdtest.Transfer(fmt.Sprintf("%s-%d", prefix, id), ledgerdtest.UserAccount(1+id%4),
				ledgerdtest.UserAccount(1+(id+1)%4), "1.00"))
		}
		head = l.Transfers(t, ledger, ts...)
		i += k
	}
	return head
}

func TestRunPostgresInOrderAcrossFrames(t *testing.T) {
	t.Parallel()
	l := ledgerdtest.Start(t)
	ledger := testenv.Name(t)
	s := newService(t)
	// A batch of 7 cuts across the frames (up to 17 transfers each).
	c := newConsumer(t, consumer.Config{Ledger: ledger, NATS: natsConn(t, l.NATSURL), BatchMax: 7})
	stop := run(t, c, s, "in-order", record) // before the ledger has a stream: it waits for it
	l.Setup(t, ledger, 4)
	head := flow(t, l, ledger, "a", 120, 17)
	s.reach(t, "in-order", ledger, head)
	head = flow(t, l, ledger, "b", 40, 9) // while it runs
	s.reach(t, "in-order", ledger, head)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v, want context.Canceled", err)
	}
	s.checkSeen(t, l, ledger, head)
}

func TestRunPostgresExactlyOnceAcrossRestarts(t *testing.T) {
	t.Parallel()
	l := ledgerdtest.Start(t)
	ledger := testenv.Name(t)
	l.Setup(t, ledger, 4)
	head := flow(t, l, ledger, "a", 60, 11)
	s := newService(t)
	c := newConsumer(t, consumer.Config{Ledger: ledger, NATS: natsConn(t, l.NATSURL), BatchMax: 16})

	t.Log("a handler that fails at a position: its batch is rolled back and the run stops")
	failAt := head - 20
	boom := errors.New("boom")
	err := c.RunPostgres(ledgerdtest.Ctx(t), s.pool, "once", func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if ev.Position == failAt {
			return boom
		}
		return record(ctx, tx, ev)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("run with a failing handler: %v, want boom", err)
	}
	if got := s.checkpoint(t, "once", ledger); got >= failAt {
		t.Fatalf("checkpoint at %d after a failure at %d: the failed batch moved it", got, failAt)
	}

	t.Log("restarted several times while transfers flow")
	for round := range 3 {
		stop := run(t, c, s, "once", record)
		head = flow(t, l, ledger, fmt.Sprintf("r%d", round), 25, 6)
		if round == 2 {
			s.reach(t, "once", ledger, head)
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: %v, want context.Canceled", round, err)
		}
	}
	s.checkSeen(t, l, ledger, head)

	t.Log("two runs of the same name take turns on the row: nothing twice")
	stop1, stop2 := run(t, c, s, "once", record), run(t, c, s, "once", record)
	head = flow(t, l, ledger, "pair", 60, 8)
	s.reach(t, "once", ledger, head)
	for _, stop := range []func() error{stop1, stop2} {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("pair: %v, want context.Canceled", err)
		}
	}
	s.checkSeen(t, l, ledger, head)
}

func TestForgedEventIsRefused(t *testing.T) {
	t.Parallel()
	l := ledgerdtest.Start(t)
	nc := natsConn(t, l.NATSURL)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	for _, tc := range []struct {
		name   string
		reason string
		forge  func(rec *eventstore.Record, head eventstore.Hash)
	}{
		{"changed payload", "the hash does not match", func(rec *eventstore.Record, head eventstore.Hash) {
			rec.Seal(head)
			rec.Payload = bytes.Replace(rec.Payload, []byte(`"forged"`), []byte(`"forgeD"`), 1) // after the seal
		}},
		{"another chain", "prev_hash", func(rec *eventstore.Record, _ eventstore.Hash) {
			rec.Seal(eventstore.Hash{1}) // valid in itself, chained on nothing the consumer applied
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ledger := testenv.Name(t)
			l.Setup(t, ledger, 2)
			head := l.Transfers(t, ledger, ledgerdtest.Transfer("t1", "bank", ledgerdtest.UserAccount(1), "10.00"))
			c := newConsumer(t, consumer.Config{Ledger: ledger, NATS: nc})
			var applied consumer.Checkpoint
			seen := make(chan uint64, 64)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- c.Run(ctx, consumer.Checkpoint{}, func(_ context.Context, ev consumer.Event) error {
					applied = ev.Checkpoint()
					seen <- ev.Position
					return nil
				})
			}()
			for pos := range seen {
				if pos == head {
					break
				}
			}
			t.Log("a forged transfer of 1,000,000.00 at the next position, published on the stream")
			forged := eventstore.Record{Ledger: ledger, Position: head + 1, Type: domain.TypeTransferCommitted,
				SchemaVersion: domain.SchemaVersion, RecordedAt: time.Now().UTC().Truncate(time.Microsecond), CommandID: "forged",
				Payload: domain.AppendEvent(nil, domain.TransferCommitted{ID: "forged", EffectiveAt: time.Now().UTC().Truncate(time.Microsecond),
					Postings: []domain.Posting{{Debit: "bank", Credit: ledgerdtest.UserAccount(1), Asset: "USD",
						Amount: domain.Amount{Units: domain.UnitsFromInt64(100_000_000), Scale: 2}}}})}
			tc.forge(&forged, applied.Hash)
			_, err := js.PublishMsg(ledgerdtest.Ctx(t), natsbus.NewFrame(natsbus.Subject(ledger), []eventstore.Record{forged}))
			testenv.NoError(t, err)
			select {
			case err = <-done:
			case pos := <-seen:
				t.Fatalf("the handler saw position %d: the forged event", pos)
			}
			var ce *consumer.ChainError
			if !errors.As(err, &ce) || ce.Position != head+1 || !errors.Is(err, consumer.ErrChainBroken) {
				t.Fatalf("run: %v, want a ChainError at %d", err, head+1)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), fmt.Sprintf("position %d", head+1)) {
				t.Errorf("error %q, want it to name position %d and say %q", err, head+1, tc.reason)
			}
			close(seen)
			for pos := range seen {
				if pos > head {
					t.Fatalf("the handler saw position %d: the forged event", pos)
				}
			}
		})
	}
}

func TestReadsWhatTheStreamNoLongerHoldsFromTheLog(t *testing.T) {
	t.Parallel()
	l := ledgerdtest.Start(t)
	ledger := testenv.Name(t)
	l.Setup(t, ledger, 4)
	head := flow(t, l, ledger, "a", 60, 7)
	nc := natsConn(t, l.NATSURL)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	stream, err := js.Stream(ledgerdtest.Ctx(t), natsbus.StreamName(ledger))
	testenv.NoError(t, err)
	testenv.Eventually(t, wait, func() error { // the relay has published up to the head
		info, err := stream.Info(ledgerdtest.Ctx(t))
		if err != nil {
			return err
		}
		last, err := stream.GetMsg(ledgerdtest.Ctx(t), info.State.LastSeq)
		if err != nil {
			return err
		}
		if got := last.Header.Get(natsbus.HeaderLast); got != fmt.Sprint(head) {
			return fmt.Errorf("the stream ends at %s, want %d", got, head)
		}
		return nil
	})
	t.Log("the stream's first frames are gone, as after max-age")
	testenv.NoError(t, stream.Purge(ledgerdtest.Ctx(t), jetstream.WithPurgeKeep(3)))

	s := newService(t)
	noLog := newConsumer(t, consumer.Config{Ledger: ledger, NATS: nc})
	err = noLog.RunPostgres(ledgerdtest.Ctx(t), s.pool, "fallback", record)
	if !errors.Is(err, consumer.ErrNotInStream) || !strings.Contains(err.Error(), "position 1") {
		t.Fatalf("without the log: %v, want ErrNotInStream at position 1", err)
	}

	c := newConsumer(t, consumer.Config{Ledger: ledger, NATS: nc, Audit: l.Audit, BatchMax: 10})
	stop := run(t, c, s, "fallback", record)
	s.reach(t, "fallback", ledger, head)
	head = flow(t, l, ledger, "b", 20, 5) // then from the stream
	s.reach(t, "fallback", ledger, head)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	s.checkSeen(t, l, ledger, head)
}
