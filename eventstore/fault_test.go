package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// freezer holds appends that reach it until released, as a SIGSTOP in the
// middle of an append transaction would.
type freezer struct {
	armed   atomic.Bool
	frozen  chan struct{} // closed when an append is held
	release chan struct{}
	once    sync.Once
}

func newFreezer(t *testing.T) *freezer {
	f := &freezer{frozen: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(f.thaw)
	return f
}

func (f *freezer) hold() {
	if !f.armed.Load() {
		return
	}
	f.once.Do(func() { close(f.frozen) })
	<-f.release
}

func (f *freezer) thaw() {
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

// TestLeaseHolderFrozenMidAppend freezes a lease holder between moving the
// head and the COMMIT (it holds the head row's lock), ends its lease session
// (as pg_terminate_backend by an operator, or the network, would), and checks
// that the next holder appends while the first is still frozen: the frozen
// append ran on the lease's own session, so ending the session rolled it back
// and freed the row. Before appends ran on the lease session, the frozen
// append sat on a pool connection that nothing ended, and the next holder's
// append waited on the row for as long as the freeze lasted.
func TestLeaseHolderFrozenMidAppend(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ledger := testenv.Name(t)
	a, b := eventstore.NewLease(pool.Config().ConnConfig), eventstore.NewLease(pool.Config().ConnConfig)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	f := newFreezer(t)
	eventstore.SetLeaseBeforeCommit(a, f.hold)
	held, ok := tryAcquire(t, a, ledger)
	if !ok {
		t.Fatal("first lease not taken")
	}
	first := records(ledger, 0, eventstore.Hash{}, 1)
	testenv.NoError(t, held.Append(context.Background(), 0, eventstore.Hash{}, first))

	t.Cleanup(f.thaw) // before held's Release (cleanups run last first), which waits for the append
	f.armed.Store(true)
	frozenErr := make(chan error, 1)
	go func() {
		frozenErr <- held.Append(context.Background(), 1, first[0].Hash, records(ledger, 1, first[0].Hash, 1))
	}()
	<-f.frozen
	// Terminate the frozen holder's session of this ledger only: find it by
	// its lock on this ledger's key.
	var pid int32
	testenv.NoError(t, pool.QueryRow(context.Background(), `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND (classid::bigint << 32 | objid::bigint) = $1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, eventstore.LeaseKey(ledger)).Scan(&pid))
	var terminated bool
	testenv.NoError(t, pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, pid).Scan(&terminated))
	if !terminated {
		t.Fatalf("lease session %d not terminated", pid)
	}

	var hb *eventstore.Held
	testenv.Eventually(t, 10*time.Second, func() error {
		h, ok, err := b.TryAcquire(context.Background(), ledger)
		if err != nil || !ok {
			return errors.Join(err, errors.New("lease still held"))
		}
		hb = h
		return nil
	})
	t.Cleanup(hb.Release)
	// The first holder is still frozen: the append below must not wait for
	// it. The deadline only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := records(ledger, 1, first[0].Hash, 1)
	next[0].CommandID = "by-b"
	next[0].Seal(first[0].Hash)
	if err := hb.Append(ctx, 1, first[0].Hash, next); err != nil {
		t.Fatalf("append by the new holder while the old one is frozen: %v", err)
	}
	select {
	case err := <-frozenErr:
		t.Fatalf("frozen append returned %v before it was thawed", err)
	default:
	}
	f.thaw()
	if err := <-frozenErr; err == nil {
		t.Fatal("the frozen holder's append committed after its session was ended")
	}
	all := readAll(t, s, ledger)
	if len(all) != 2 || all[1].CommandID != "by-b" {
		t.Fatalf("log has %d records, last by %q; want 2, last by-b", len(all), all[len(all)-1].CommandID)
	}
	checkChain(t, all)
}

// TestAppendFrozenWriterBounded freezes an append in the middle of its
// transaction on a pool connection, where nobody ends its session: another
// append is refused after AppendLockTimeout instead of waiting for the row
// (SQLSTATE 55P03), and once AppendIdleTimeout has passed PostgreSQL ends the
// frozen session, which frees the row: the next append goes through while the
// first writer is still frozen. Before these limits, the second append waited
// for as long as the freeze lasted.
func TestAppendFrozenWriterBounded(t *testing.T) {
	t.Parallel()
	frozenStore, pool := newStore(t)
	other := eventstore.New(pool)
	ledger := testenv.Name(t)
	first := records(ledger, 0, eventstore.Hash{}, 1)
	testenv.NoError(t, frozenStore.Append(context.Background(), ledger, 0, eventstore.Hash{}, first))

	f := newFreezer(t)
	eventstore.SetBeforeCommit(frozenStore, f.hold)
	f.armed.Store(true)
	frozenErr := make(chan error, 1)
	go func() {
		frozenErr <- frozenStore.Append(context.Background(), ledger, 1, first[0].Hash, records(ledger, 1, first[0].Hash, 1))
	}()
	<-f.frozen

	next := records(ledger, 1, first[0].Hash, 1)
	next[0].CommandID = "by-other"
	next[0].Seal(first[0].Hash)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := other.Append(ctx, ledger, 1, first[0].Hash, next)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("append behind a frozen one: %v, want a lock timeout (55P03)", err)
	}
	testenv.Eventually(t, 4*eventstore.AppendIdleTimeout, func() error {
		return other.Append(ctx, ledger, 1, first[0].Hash, next)
	})
	select {
	case err := <-frozenErr:
		t.Fatalf("frozen append returned %v before it was thawed", err)
	default:
	}
	f.thaw()
	if err := <-frozenErr; err == nil {
		t.Fatal("the frozen append committed after its session was ended")
	}
	all := readAll(t, frozenStore, ledger)
	if len(all) != 2 || all[1].CommandID != "by-other" {
		t.Fatalf("log has %d records, last by %q; want 2, last by-other", len(all), all[len(all)-1].CommandID)
	}
	checkChain(t, all)
}
