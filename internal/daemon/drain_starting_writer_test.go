package daemon_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestDrainStopsAWriterStartingMeanwhile: a writer whose start was admitted
// just before the node's drain began (its ledger's catalog read still in
// flight when StopAll took its list of writers) kept writing on the draining
// node: admitWriter is asked once, before the catalog read, and StopAll ran
// once, at the drain's start, so the writer registered after it held the
// ledger's lease there until it went idle (never, while commands reached it,
// forwarded to the lease's holder). The registry now refuses to start a
// writer admitted before a StopAll it could not see.
func TestDrainStopsAWriterStartingMeanwhile(t *testing.T) {
	t.Parallel()
	a := start(t)
	b := startNode(t, a.pgURL, a.key, "b", daemon.AllRoles)
	ledger := testenv.Name(t)

	// Hold the catalog read of a's writer start: ledgers locked.
	pg, err := pgx.Connect(ctx(t), a.pgURL)
	testenv.NoError(t, err)
	defer pg.Close(context.Background())
	tx, err := pg.Begin(ctx(t))
	testenv.NoError(t, err)
	_, err = tx.Exec(ctx(t), `LOCK TABLE ledgers IN ACCESS EXCLUSIVE MODE`)
	testenv.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := a.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // a admitted the writer; its catalog read waits on the lock

	var aID string
	nodes, err := b.adminClient(t).ListNodes(ctx(t), &ledgerv1.ListNodesRequest{})
	testenv.NoError(t, err)
	for _, n := range nodes.GetNodes() {
		if n.GetId() != "b" {
			aID = n.GetId()
		}
	}
	_, err = b.adminClient(t).DrainNode(ctx(t), &ledgerv1.DrainNodeRequest{Node: aID, Drain: true})
	testenv.NoError(t, err)
	drainingRe := regexp.MustCompile(`(?m)^ledger_node_draining 1$`)
	testenv.Eventually(t, 4*time.Second, func() error {
		if !drainingRe.MatchString(metricsText(t, a)) {
			return fmt.Errorf("a not draining yet")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // StopAll ran: no writer was registered yet
	testenv.NoError(t, tx.Rollback(ctx(t)))
	if err := <-done; err != nil {
		t.Fatalf("DefineAsset: %v", err)
	}

	// a drains: within a few heartbeats it writes no ledger, whatever
	// commands keep coming (sent to b, which forwards to the holder).
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _ = b.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
		w := placement(t, b, ledger).GetWriterNode()
		if w != aID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is written by %s, which has drained for 10 s: a writer admitted just before the drain survives it", ledger, w)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
