package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// terminateLeaseSessions ends every session holding an advisory lock in the
// test's database, as a crash of their process would.
func terminateLeaseSessions(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	testenv.NoError(t, err)
}

func tryAcquire(t *testing.T, l *eventstore.Lease, ledger string) (*eventstore.Held, bool) {
	t.Helper()
	h, ok, err := l.TryAcquire(context.Background(), ledger)
	testenv.NoError(t, err)
	if ok {
		t.Cleanup(h.Release)
	}
	return h, ok
}

func TestLeaseOneHolderAtATime(t *testing.T) {
	_, pool := newStore(t)
	a, b := eventstore.NewLease(pool.Config().ConnConfig), eventstore.NewLease(pool.Config().ConnConfig)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)

	held, ok := tryAcquire(t, a, "l1")
	if !ok {
		t.Fatal("first TryAcquire: not acquired, want acquired")
	}
	for i := range 3 { // retries reuse the idle connection and still fail
		if _, ok := tryAcquire(t, b, "l1"); ok {
			t.Fatalf("attempt %d while held: acquired, want not", i)
		}
	}
	if _, ok := tryAcquire(t, b, "l2"); !ok {
		t.Fatal("another ledger: not acquired, want acquired")
	}

	held.Release()
	select {
	case <-held.Lost():
	default:
		t.Fatal("Lost not closed after Release")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := tryAcquire(t, b, "l1"); !ok {
			return errors.New("not acquired after the holder released")
		}
		return nil
	})
}

func TestLeaseLostWhenSessionDies(t *testing.T) {
	_, pool := newStore(t)
	a, b := eventstore.NewLease(pool.Config().ConnConfig), eventstore.NewLease(pool.Config().ConnConfig)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	held, ok := tryAcquire(t, a, "l1")
	if !ok {
		t.Fatal("not acquired")
	}
	terminateLeaseSessions(t, pool)
	select {
	case <-held.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed 5s after the session died")
	}
	if _, ok := tryAcquire(t, b, "l1"); !ok {
		t.Fatal("not acquired after the holder's session died")
	}
	held.Release() // after Lost: returns at once
}

// TestProjectorLeases: one process at a time holds a ledger's projector
// lease; its holder holds it again at once; a Release lets another take it;
// the registry shows the holder; and when the holder's session dies, every
// lease it held is lost at once and free for the other.
func TestProjectorLeases(t *testing.T) {
	_, pool := newStore(t)
	ctx := context.Background()
	a := eventstore.NewLocks(pool.Config().ConnConfig, "a")
	b := eventstore.NewLocks(pool.Config().ConnConfig, "b")
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	try := func(l *eventstore.Locks, ledger string) (<-chan struct{}, bool) {
		t.Helper()
		lost, ok, err := l.TryAcquire(ctx, ledger)
		testenv.NoError(t, err)
		return lost, ok
	}
	lost, ok := try(a, "l1")
	if !ok {
		t.Fatal("a: l1 not acquired")
	}
	if _, ok := try(a, "l1"); !ok || a.Held() != 1 {
		t.Fatalf("a again: %v, holding %d, want held once", ok, a.Held())
	}
	if _, ok := try(a, "l2"); !ok {
		t.Fatal("a: l2 not acquired")
	}
	if _, ok := try(b, "l1"); ok {
		t.Fatal("b took l1 while a holds it")
	}
	places, err := eventstore.NewNodes(pool).Placements(ctx)
	testenv.NoError(t, err)
	if len(places) != 2 || places[0].Node != "a" || places[0].Role != eventstore.RoleProjector {
		t.Fatalf("placements: %+v, want l1 and l2 on a", places)
	}

	a.Release("l1")
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := try(b, "l1"); !ok {
			return errors.New("b: l1 not acquired after a released it")
		}
		return nil
	})
	terminateLeaseSessions(t, pool)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("a's leases not lost when its session died")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		// b's session was ended too: its first try fails, the next opens
		// a new one.
		_, ok, err := b.TryAcquire(ctx, "l2")
		if err == nil && !ok {
			err = errors.New("b: l2 not acquired after a's session died")
		}
		return err
	})
}

// TestProjectorLeaseSurvivesASlowPing: a projector lease session that
// answers its ping late (a loaded box; here its backend stopped for 2.5 s)
// keeps its leases: they fence nothing, and dropping them stopped every
// relay and projection of the process until the next write.
func TestProjectorLeaseSurvivesASlowPing(t *testing.T) {
	_, pool := newStore(t)
	ctx := context.Background()
	a := eventstore.NewLocks(pool.Config().ConnConfig, "a")
	t.Cleanup(a.Close)
	lost, ok, err := a.TryAcquire(ctx, "l1")
	testenv.NoError(t, err)
	if !ok {
		t.Fatal("l1 not acquired")
	}
	var pid int
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, eventstore.ProjectorLeaseApplicationName).Scan(&pid))
	stopBackend(t, pool, pid, 2500*time.Millisecond)
	select {
	case <-lost:
		t.Fatal("the projector leases were lost on a ping answered 2.5 s late")
	case <-time.After(2 * eventstore.LeasePingEvery): // a ping after the stop, answered
	}
	b := eventstore.NewLocks(pool.Config().ConnConfig, "b")
	t.Cleanup(b.Close)
	if _, ok, err := b.TryAcquire(ctx, "l1"); err != nil || ok {
		t.Fatalf("b: acquired %v, %v: want l1 still held by a", ok, err)
	}
}

// TestProjectorLeaseSurvivesASlowRelease: an unlock of one ledger's
// projector lease answered late keeps the process's other leases (a ledger
// going idle gave its lease back, the unlock timed out at 1 s, and the
// session ended with every lease on it).
func TestProjectorLeaseSurvivesASlowRelease(t *testing.T) {
	_, pool := newStore(t)
	ctx := context.Background()
	a := eventstore.NewLocks(pool.Config().ConnConfig, "a")
	t.Cleanup(a.Close)
	var lost <-chan struct{}
	for _, ledger := range []string{"l1", "l2"} {
		l, ok, err := a.TryAcquire(ctx, ledger)
		testenv.NoError(t, err)
		if !ok {
			t.Fatalf("%s not acquired", ledger)
		}
		lost = l // one session: one channel for all
	}
	var pid int
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, eventstore.ProjectorLeaseApplicationName).Scan(&pid))
	stopped := make(chan struct{})
	go func() { defer close(stopped); stopBackend(t, pool, pid, 2500*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond) // the backend stopped first
	a.Release("l2")
	<-stopped
	select {
	case <-lost:
		t.Fatal("l1 lost: a Release answered 2.5 s late ended the session")
	case <-time.After(2 * eventstore.LeasePingEvery):
	}
	b := eventstore.NewLocks(pool.Config().ConnConfig, "b")
	t.Cleanup(b.Close)
	if _, ok, err := b.TryAcquire(ctx, "l1"); err != nil || ok {
		t.Fatalf("b: acquired l1 %v, %v: want it still held by a", ok, err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok, err := b.TryAcquire(ctx, "l2"); err != nil || !ok {
			return fmt.Errorf("b: l2 not acquired after a released it (%v)", err)
		}
		return nil
	})
}

// stopBackend stops the PostgreSQL backend pid (SIGSTOP) for d, as a
// loaded box's scheduler may, then lets it go on. It skips the test when
// the server is not on this machine or not this user's to signal.
func stopBackend(t *testing.T, pool *pgxpool.Pool, pid int, d time.Duration) {
	t.Helper()
	host := pool.Config().ConnConfig.Host
	if !strings.HasPrefix(host, "/") && host != "127.0.0.1" && host != "localhost" && host != "::1" {
		t.Skipf("PostgreSQL on %s: its backends are not this machine's to stop", host)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		t.Skipf("backend %d is not a postgres process here (%q, %v)", pid, comm, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Skipf("cannot stop backend %d: %v", pid, err)
	}
	defer func() { testenv.NoError(t, syscall.Kill(pid, syscall.SIGCONT)) }()
	time.Sleep(d)
}
