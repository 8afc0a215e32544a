package commands_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// idleNode is one process's registry of writers, with its own leases.
func idleNode(t *testing.T, store *eventstore.Store, lease *eventstore.Lease, idle time.Duration) *commands.Ledgers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := commands.NewLedgers(ctx, store, commands.Options{Store: store, Lease: commands.PostgresLeases(lease), IdleAfter: idle}, 0, nil, nil)
	t.Cleanup(func() { cancel(); l.Wait(); lease.Close() })
	return l
}

// TestIdleWriterReleasesItsLease: a writer that stopped idle gave its lease
// up: another process's writer of the ledger takes it and serves, without
// waiting for the first process to end.
func TestIdleWriterReleasesItsLease(t *testing.T) {
	store, pool := newLeaseStore(t)
	ledger := testenv.Name(t)
	const idle = 100 * time.Millisecond
	a := idleNode(t, store, eventstore.NewLease(pool.Config().ConnConfig), idle)
	b := idleNode(t, store, eventstore.NewLease(pool.Config().ConnConfig), idle)
	wa, err := a.Create(ledger)
	testenv.NoError(t, err)
	setup(t, wa, 2)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := a.Running(); n != 0 {
			return fmt.Errorf("%d writers still run in a", n)
		}
		return nil
	})
	wb, err := b.Writer(ledger)
	testenv.NoError(t, err)
	// b's first try of the lease finds it free: b serves at once, no takeover.
	res, err := wb.Submit(context.Background(), []domain.Command{transferCmd("b1", 0, 1, "1.00")})
	testenv.NoError(t, err)
	mustCreate(t, res)
}

// TestIdleWriterHandsRequestsOn: requests sent while writers keep stopping
// idle all reach a writer, each applied once, none refused as closed.
func TestIdleWriterHandsRequestsOn(t *testing.T) {
	store := newStore(t)
	ledger := testenv.Name(t)
	const idle = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	l := commands.NewLedgers(ctx, store, commands.Options{Store: store, IdleAfter: idle}, 0, nil, nil)
	t.Cleanup(func() { cancel(); l.Wait() })
	w, err := l.Create(ledger)
	testenv.NoError(t, err)
	setup(t, w, 2)

	const senders, each = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(s), 1))
			for i := range each {
				w, err := l.Writer(ledger)
				if err != nil {
					errs <- err
					continue
				}
				// Around the idle bound: some requests reach a writer that
				// stopped since it was looked up.
				time.Sleep(time.Duration(r.IntN(int(3 * idle))))
				res, err := w.Submit(context.Background(), []domain.Command{transferCmd(fmt.Sprintf("s%d-%d", s, i), 0, 1, "0.01")})
				switch {
				case err != nil:
					errs <- err
				case res[0].Err != nil:
					errs <- res[0].Err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if errors.Is(err, commands.ErrClosed) {
			t.Errorf("a request met a writer stopping idle: %v", err)
		} else {
			t.Errorf("request: %v", err)
		}
	}
	head, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)
	if want := uint64(1 + 2 + senders*each); head != want {
		t.Errorf("head %d, want %d: every transfer once", head, want)
	}
}
