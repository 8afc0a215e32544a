package eventstore_test

import (
	"context"
	"errors"
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
