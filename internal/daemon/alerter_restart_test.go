package daemon_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestAlertRaisedAfterTheWriterWentIdleTwice: as
// TestAlertRaisedAfterTheWriterWentIdle, but the writer starts again here
// (a command) and goes idle a second time before the readers have caught
// up. The alerter's watcher (alerterAfterReaders) took the head at the
// first stop, and the second stop starts no watcher (a.watching): when the
// readers stopped, the head had "moved" (by this node's own writer) and the
// alerter stopped without its last round, so the alert was never raised.
// The last round no longer looks at the head, only at whether another node
// holds the writer lease.
func TestAlertRaisedAfterTheWriterWentIdleTwice(t *testing.T) {
	t.Parallel()
	h := startIdle(t, "", newKey(t))
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "bob",
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "100.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big), want{code: codeCreated})

	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx(t))
	testenv.NoError(t, err)
	_, err = tx.Exec(ctx(t), `LOCK TABLE alerts IN EXCLUSIVE MODE`)
	testenv.NoError(t, err)
	alert := fmt.Sprintf("%s:%d:big:bob", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	time.Sleep(10 * idleFor) // the writer goes idle a first time
	// A command starts the writer again (no alert of its own), and it goes
	// idle again; the readers are still held back meanwhile.
	h.transferOK(t, ledger, transfer("t2", "alice", "carol", "1.00", "USD"))
	time.Sleep(10 * idleFor)
	if raised := h.raisedAlerts(t, ledger); len(raised) != 0 {
		t.Fatalf("alerts raised while the projection could not write them: %v", raised)
	}
	testenv.NoError(t, tx.Rollback(ctx(t)))

	testenv.Eventually(t, 30*time.Second, func() error {
		if raised := h.eventsOf(t, ledger, domain.TypeAlertRaised, "id", alert); len(raised) != 1 {
			return fmt.Errorf("alert %s raised %d times", alert, len(raised))
		}
		return nil
	})
}
