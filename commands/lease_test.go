package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// leasedNode is one process's writer of a ledger, with its own lease
// connections: killing its sessions is what a crash of that process does.
type leasedNode struct {
	w    *commands.Writer
	stop func()
}

func startLeased(t *testing.T, ledger string, store *eventstore.Store, pool *pgxpool.Pool) *leasedNode {
	t.Helper()
	lease := eventstore.NewLease(pool.Config().ConnConfig)
	ctx, cancel := context.WithCancel(context.Background())
	w := commands.NewWriter(commands.Options{Ledger: ledger, Store: store, Lease: commands.PostgresLeases(lease)})
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; lease.Close() }) }
	t.Cleanup(stop)
	return &leasedNode{w: w, stop: stop}
}

func newLeaseStore(t *testing.T) (*eventstore.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	return eventstore.New(pool), pool
}

// serving reports whether w writes: a read succeeds.
func serving(w *commands.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return w.Read(ctx, func(*domain.State) {})
}

func TestLeaseOneWriterServes(t *testing.T) {
	store, pool := newLeaseStore(t)
	ledger := testenv.Name(t)
	a := startLeased(t, ledger, store, pool)
	testenv.Eventually(t, 10*time.Second, func() error { return serving(a.w) })
	setup(t, a.w, 2)
	b := startLeased(t, ledger, store, pool)
	for i := range 3 {
		began := time.Now()
		_, err := b.w.Submit(context.Background(), []domain.Command{transferCmd(fmt.Sprintf("b%d", i), 0, 1, "1.00")})
		if !errors.Is(err, commands.ErrUnavailable) || !errors.Is(err, commands.ErrNotLeader) {
			t.Fatalf("standby Submit: %v, want ErrUnavailable wrapping ErrNotLeader", err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("standby answered in %s, want under 2s", d)
		}
	}
	mustCreate(t, submit(t, a.w, transferCmd("a0", 0, 1, "1.00")))
}

func TestLeaseFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(t *testing.T, pool *pgxpool.Pool, holder *leasedNode)
	}{
		{"holder's session dies", func(t *testing.T, pool *pgxpool.Pool, _ *leasedNode) {
			_, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
				WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
			testenv.NoError(t, err)
		}},
		{"holder stops", func(_ *testing.T, _ *pgxpool.Pool, holder *leasedNode) { holder.stop() }},
	} {
		t.Run(tc.name, func(t *testing.T) { testLeaseFailover(t, tc.fail) })
	}
}

func testLeaseFailover(t *testing.T, fail func(*testing.T, *pgxpool.Pool, *leasedNode)) {
	store, pool := newLeaseStore(t)
	ledger := testenv.Name(t)
	const accounts, clients = 4, 4
	a := startLeased(t, ledger, store, pool)
	testenv.Eventually(t, 10*time.Second, func() error { return serving(a.w) })
	setup(t, a.w, accounts)
	b := startLeased(t, ledger, store, pool)
	nodes := []*leasedNode{a, b}

	// Clients write through whichever writer answers, retrying a transfer
	// with the same id until it is acknowledged (CREATED or EXISTS).
	var (
		ackedMu sync.Mutex
		acked   = map[string]bool{}
		seq     atomic.Int64
		stopped atomic.Bool
		wg      sync.WaitGroup
	)
	send := func(id string, from, to int) {
		for i := 0; ; i++ {
			res, err := nodes[i%2].w.Submit(context.Background(), []domain.Command{transferCmd(id, from, to, "1.00")})
			var exists *domain.ExistsError
			switch {
			case err == nil && (res[0].Err == nil || errors.As(res[0].Err, &exists)):
				ackedMu.Lock()
				acked[id] = true
				ackedMu.Unlock()
				return
			case err == nil:
				t.Errorf("%s: %v", id, res[0].Err)
				return
			case !errors.Is(err, commands.ErrUnavailable) && !errors.Is(err, commands.ErrClosed):
				t.Errorf("%s: %v", id, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				n := seq.Add(1)
				send(fmt.Sprintf("t%d", n), c, (c+1)%accounts)
			}
		}()
	}
	ackedCount := func() int { ackedMu.Lock(); defer ackedMu.Unlock(); return len(acked) }
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := ackedCount(); n < 200 {
			return fmt.Errorf("%d transfers acknowledged before the failure", n)
		}
		return nil
	})
	fail(t, pool, a)
	before := ackedCount()
	began := time.Now()
	testenv.Eventually(t, 15*time.Second, func() error {
		if n := ackedCount(); n < before+200 {
			return fmt.Errorf("%d transfers acknowledged after the failure, want 200", n-before)
		}
		return nil
	})
	t.Logf("200 more transfers acknowledged %s after the failure", time.Since(began).Round(time.Millisecond))
	stopped.Store(true)
	wg.Wait()

	// The log is gapless, every acknowledged transfer is in it exactly once.
	var count, maxPos int64
	testenv.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(max(position), 0) FROM events WHERE ledger = $1`, ledger).Scan(&count, &maxPos))
	if count != maxPos {
		t.Errorf("%d events up to position %d: the log has gaps", count, maxPos)
	}
	rows, err := pool.Query(context.Background(), `SELECT command_id, count(*) FROM events
		WHERE ledger = $1 AND type = 'TransferCommitted' GROUP BY command_id`, ledger)
	testenv.NoError(t, err)
	inLog := map[string]int64{}
	for rows.Next() {
		var (
			id string
			n  int64
		)
		testenv.NoError(t, rows.Scan(&id, &n))
		inLog[id] = n
	}
	testenv.NoError(t, rows.Err())
	for id := range acked {
		if inLog[id] != 1 {
			t.Errorf("acknowledged transfer %s is in the log %d times, want 1", id, inLog[id])
		}
	}
	for id, n := range inLog {
		if n != 1 {
			t.Errorf("transfer %s committed %d times", id, n)
		}
	}
	t.Logf("%d transfers acknowledged, %d in the log, head %d", len(acked), len(inLog), maxPos)

	// Whichever writer serves now agrees with the log. One more transfer
	// appended by it proves its state is at the head.
	send("final", 0, 1)
	replayed, head := replaySnapshot(t, store, ledger, accounts)
	for _, n := range nodes {
		if serving(n.w) != nil {
			continue
		}
		live, pos := liveSnapshot(t, n.w, accounts)
		if pos != head {
			t.Errorf("serving writer at %d, log head %d", pos, head)
		}
		equalSnapshots(t, live, replayed)
	}
}

// TestLeaseLostBeforeAppendAcknowledgesNothing holds a writer's committer
// between deciding a batch and appending it, ends the writer's lease session
// meanwhile (another process then takes the ledger over), and lets the append
// go: it must fail, with nothing written and nothing acknowledged, because the
// lease is checked by the append's own commit. Before, the append went through
// the pool, committed, and the transfer was acknowledged by a writer that no
// longer held the lease.
func TestLeaseLostBeforeAppendAcknowledgesNothing(t *testing.T) {
	store, pool := newLeaseStore(t)
	ledger := testenv.Name(t)
	var (
		armed   atomic.Bool
		held    = make(chan struct{})
		release = make(chan struct{})
	)
	lease := eventstore.NewLease(pool.Config().ConnConfig)
	opts := commands.Options{Ledger: ledger, Store: store, Lease: commands.PostgresLeases(lease)}
	commands.SetBeforeAppend(&opts, func(uint64) {
		if armed.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
	})
	w := commands.NewWriter(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	thaw := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { thaw(); cancel(); <-done; lease.Close() })
	testenv.Eventually(t, 10*time.Second, func() error { return serving(w) })
	setup(t, w, 2)

	armed.Store(true)
	type reply struct {
		res []commands.Result
		err error
	}
	replied := make(chan reply, 1)
	go func() {
		res, err := w.Submit(context.Background(), []domain.Command{transferCmd("late", 0, 1, "1.00")})
		replied <- reply{res, err}
	}()
	<-held
	var terminated bool
	testenv.NoError(t, pool.QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND (classid::bigint << 32 | objid::bigint) = $1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, eventstore.LeaseKey(ledger)).Scan(&terminated))
	if !terminated {
		t.Fatal("lease session not terminated")
	}
	// Another process takes the ledger over before the held append goes on.
	b := startLeased(t, ledger, store, pool)
	testenv.Eventually(t, 15*time.Second, func() error { return serving(b.w) })
	thaw()
	r := <-replied
	if r.err == nil {
		t.Fatalf("transfer decided before the lease was lost was acknowledged: %+v", r.res)
	}
	if !errors.Is(r.err, commands.ErrUnavailable) {
		t.Errorf("Submit: %v, want ErrUnavailable", r.err)
	}
	var n int
	testenv.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*) FROM events WHERE ledger = $1 AND command_id = 'late'`, ledger).Scan(&n))
	if n != 0 {
		t.Fatalf("transfer late is in the log %d times after a failed append, want 0", n)
	}
	// The client's retry goes to the new writer and is applied once.
	mustCreate(t, submit(t, b.w, transferCmd("late", 0, 1, "1.00")))
}
