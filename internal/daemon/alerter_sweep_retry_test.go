package daemon_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestAlertSweepRetriesAWriterItCouldNotStart: the writer node's
// sweep finds an alert not raised while it cannot start the ledger's writer
// (its one writer slot taken by another ledger's). Once the slot is free,
// a later sweep starts the writer and the alert is raised, without a
// command to the ledger.
func TestAlertSweepRetriesAWriterItCouldNotStart(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	pgURL := testenv.MigratedPostgresURL(t)
	w := &harness{pgURL: pgURL, key: key}
	w.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key, LedgerIdle: idleFor,
			NodeID: "w", Roles: daemon.Roles{Writer: true, Query: true}, WritersMax: 1},
		Logger: discardLogger(),
	}
	w.run(t)
	startIdleNode(t, pgURL, key, "p", daemon.Roles{Projector: true, Query: true})
	ledger, busy := testenv.Name(t), testenv.Name(t)
	w.setup(t, ledger)
	w.watchBigDebitsOfBob(t, ledger)

	release := holdAlertsBack(t, pgURL)
	alert := fmt.Sprintf("%s:%d:big:bob", ledger, w.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	writing := func(l string) bool {
		return strings.Contains(metricsText(t, w), fmt.Sprintf("ledger_writer_writing{ledger=%q}", l))
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if writing(ledger) {
			return fmt.Errorf("w still runs the writer of %s", ledger)
		}
		return nil
	})
	time.Sleep(5 * idleFor) // its alerter's last round is over

	// Another ledger's writer takes w's one slot while the alert is
	// projected and the sweeps run.
	w.setup(t, busy)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(idleFor / 3):
			}
			w.transferOK(t, busy, transfer(fmt.Sprintf("b%d", i), "alice", "bob", "1.00", "USD"))
		}
	}()
	release()
	time.Sleep(12 * time.Second) // two sweeps, at least, find it and cannot start its writer
	if raised := w.raisedAlerts(t, ledger); len(raised) != 0 {
		// The busy ledger's writer went idle between two transfers (a
		// loaded box) and a sweep started this one's: nothing to prove.
		t.Logf("raised while w's writer slot was to be taken: %v", raised)
	}
	close(stop)
	wg.Wait()
	w.raisedOnce(t, ledger, alert)
}
