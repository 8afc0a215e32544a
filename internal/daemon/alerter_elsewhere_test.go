package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestNoWriterStartedWhereTheLedgerMovedAway: a ledger whose writer
// went idle on h1 and is now written by h2 must not get a writer started on
// h1 by h1's alerter. h1's readers (it holds the projector lease) keep
// running while h2 appends, and h1's alerter lives as long (it outlives
// an idle writer until the readers stop): an alert it read made it start a
// writer on h1, which waited there for h2's lease (ledger_writer_writing 0)
// and kept h1's alerter for good. While its writer is stopped an alerter
// starts none; its last round does, only if no other node holds the
// writer lease.
func TestNoWriterStartedWhereTheLedgerMovedAway(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	h1 := startIdle(t, "", key)
	h2 := startIdle(t, h1.pgURL, key)
	ledger := testenv.Name(t)
	h1.setup(t, ledger)
	h1.watchBigDebitsOfBob(t, ledger)

	// h1's projections cannot write alerts: its readers cannot catch up,
	// and so do not stop when its writer goes idle.
	release := holdAlertsBack(t, h1.pgURL)
	h1.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD"))
	time.Sleep(10 * idleFor) // h1's writer is idle
	series := fmt.Sprintf("ledger_writer_writing{ledger=%q}", ledger)
	if strings.Contains(metricsText(t, h1), series) {
		t.Fatalf("h1 still runs the writer of %s", ledger)
	}

	// h2 writes the ledger now (no node did: it decides it itself).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			_, _ = h2.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
				Transfers: []*ledgerv1.Transfer{transfer(fmt.Sprintf("h2-%d", i), "alice", "carol", "0.01", "USD")}})
		}
	}()
	defer func() { close(stop); <-done }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(metricsText(t, h2), series+" 1") {
			return fmt.Errorf("h2 does not write %s yet", ledger)
		}
		return nil
	})
	release()

	// The alert is computed on h1; h2's alerter raises it. h1 must not start
	// a writer for it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if text := metricsText(t, h1); strings.Contains(text, series) {
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, series) {
					t.Fatalf("h1 started a writer of %s, which h2 writes: %s", ledger, line)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
