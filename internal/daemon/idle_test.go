package daemon_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// idleFor is the -ledger-idle of these tests: short, so that they need not
// wait the default minute.
const idleFor = 300 * time.Millisecond

// startIdle runs ledgerd with ledgers idle after idleFor, on pgURL ("" for
// the test's own database).
func startIdle(t *testing.T, pgURL, key string) *harness {
	t.Helper()
	return startIdleNode(t, pgURL, key, "", daemon.Roles{})
}

// startIdleNode is startIdle of a node with an id and roles (zero: its
// host name, and every role).
func startIdleNode(t *testing.T, pgURL, key, id string, roles daemon.Roles) *harness {
	t.Helper()
	if pgURL == "" {
		pgURL = testenv.MigratedPostgresURL(t)
	}
	h := &harness{pgURL: pgURL, key: key}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: h.pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: h.key, LedgerIdle: idleFor,
			NodeID: id, Roles: roles},
		Logger: discardLogger(),
	}
	h.run(t)
	return h
}

// ownGoroutines counts the goroutines of the process but the embedded NATS
// server's: the test package's JetStream server stands for an external one,
// whose streams and consumers are not ledgerd's goroutines.
func ownGoroutines() int {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && !strings.Contains(g, "nats-server/v2/server.") {
			n++
		}
	}
	return n
}

// TestIdleLedgersCostNoGoroutines: 50 ledgers written once, then left idle,
// give back their writers', relays' and projectors' goroutines; a command to
// an idle ledger starts them again and is applied, and its projections
// catch up. Not parallel: it counts the process's goroutines.
func TestIdleLedgersCostNoGoroutines(t *testing.T) {
	const ledgersN = 50
	// perLedgerMin is far below what one running ledger costs (a writer, its
	// committer, a relay, a runner and a NATS consumer per projection): a
	// count this much above the baseline proves they ran.
	const perLedgerMin = 5
	// baselineMargin absorbs what the gRPC connections and the runtime add
	// or drop meanwhile: well below one ledger's share of ledgersN.
	const baselineMargin = 40
	h := startIdle(t, "", newKey(t))
	baseline := ownGoroutines()

	// Each ledger holds a hold with a timeout: its writer stays up until it
	// is voided, so that all of them run at once here.
	ledgers := make([]string, ledgersN)
	positions := make([]uint64, ledgersN)
	for i := range ledgers {
		ledgers[i] = fmt.Sprintf("%s-%d", testenv.Name(t), i)
		h.setup(t, ledgers[i])
		h.transferOK(t, ledgers[i], transfer("t1", "alice", "bob", "1.00", "USD"))
		positions[i] = h.transferOK(t, ledgers[i], pendingTransfer("h1", "alice", "bob", "1.00", "USD", 3600))
	}
	peak := ownGoroutines()
	t.Logf("goroutines: %d at the baseline, %d with %d ledgers running", baseline, peak, ledgersN)
	if peak < baseline+ledgersN*perLedgerMin {
		t.Fatalf("goroutines: %d at the baseline, %d with %d ledgers running: they should cost more", baseline, peak, ledgersN)
	}
	for i := range ledgers {
		rs := h.void(t, ledgers[i], &ledgerv1.VoidPending{Id: "v1", PendingId: "h1"})
		mustCreated(t, rs...)
		positions[i] = rs[0].GetPosition()
	}

	testenv.Eventually(t, 2*time.Minute, func() error {
		if n := ownGoroutines(); n > baseline+baselineMargin {
			return fmt.Errorf("%d goroutines, baseline %d (+%d allowed)", n, baseline, baselineMargin)
		}
		return nil
	})

	// An idle ledger takes a command: its writer reloads it.
	for _, i := range []int{0, ledgersN - 1} {
		pos := h.transferOK(t, ledgers[i], transfer("t2", "alice", "bob", "2.00", "USD"))
		if pos != positions[i]+1 {
			t.Errorf("%s: transfer after idle at %d, want %d", ledgers[i], pos, positions[i]+1)
		}
		h.checkBalances(t, "after idle", ledgers[i], pos, map[string]string{"bob": "3.00 3.00 | 0.00/3.00 | 0.00/0.00"})
		// The same id again: the reloaded writer knows it.
		again := h.transfers(t, ledgers[i], transfer("t1", "alice", "bob", "1.00", "USD"))
		checkResults(t, "t1 again after idle", again, want{code: codeExists})
	}
	// And they go idle again.
	testenv.Eventually(t, 2*time.Minute, func() error {
		if n := ownGoroutines(); n > baseline+baselineMargin {
			return fmt.Errorf("%d goroutines, baseline %d (+%d allowed)", n, baseline, baselineMargin)
		}
		return nil
	})
}

// TestIdleLedgerStillExpiresItsHolds: a ledger with a hold with a timeout
// and no traffic keeps its writer until the hold expires, at its timeout;
// after a restart with no command at all, the hold found in the read model
// starts the writer that expires it.
func TestIdleLedgerStillExpiresItsHolds(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	h := startIdle(t, "", key)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, pendingTransfer("h1", "alice", "bob", "4.00", "USD", 2))
	h.checkBalances(t, "held", ledger, pos, map[string]string{"bob": "0.00 0.00 | 0.00/0.00 | 0.00/4.00"})
	// Nothing more is sent: the hold expires at its timeout all the same.
	testenv.Eventually(t, 30*time.Second, func() error {
		b := h.balances(t, ledger, 0, "bob")["bob"]
		if s := summary(b); s != zero {
			return fmt.Errorf("bob %q, want %q", s, zero)
		}
		return nil
	})

	// A hold left open by a ledgerd that stopped: the next one expires it
	// with no command to start the ledger.
	pos = h.transferOK(t, ledger, pendingTransfer("h2", "alice", "bob", "5.00", "USD", 3))
	h.checkBalances(t, "held again", ledger, pos, map[string]string{"bob": "0.00 0.00 | 0.00/0.00 | 0.00/5.00"})
	h.m.Close()
	h2 := startIdle(t, h.pgURL, key)
	testenv.Eventually(t, 30*time.Second, func() error {
		b := h2.balances(t, ledger, 0, "bob")["bob"]
		if s := summary(b); s != zero {
			return fmt.Errorf("bob %q after the restart, want %q", s, zero)
		}
		return nil
	})
}

// TestProjectionsCatchUpWithoutAWriter: a log appended by another process
// (here, straight into the store), whose writer never runs in this ledgerd,
// is projected all the same: a query waiting for its head is answered.
func TestProjectionsCatchUpWithoutAWriter(t *testing.T) {
	t.Parallel()
	h := startIdle(t, "", newKey(t))
	st := h.importStore(t)
	source := testenv.Name(t)
	h.importWorkload(t, source, 41, 20)
	log := importExport(t, st, source)

	target := testenv.Name(t)
	copied := slices.Clone(log)
	var prev eventstore.Hash
	for i := range copied {
		copied[i].Ledger = target
		copied[i].Seal(prev)
		prev = copied[i].Hash
	}
	testenv.NoError(t, st.Append(ctx(t), target, 0, eventstore.Hash{}, copied))
	n := uint64(len(copied))
	accounts := importAccountIDs(log)
	if got, want := h.importView(t, target, n, accounts), h.importView(t, source, n, accounts); !importSameMap(got, want) {
		t.Errorf("%s serves %v, want %v", target, got, want)
	}
}
