package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Bounds of the multi-node test.
const (
	// multiLedgers is how many ledgers the load spreads over.
	multiLedgers = 20
	// multiClients is how many clients send transfers, one at a time each.
	multiClients = 8
	// multiAcksPerPhase is how many more acknowledgements each phase waits
	// for: before the faults and after each.
	multiAcksPerPhase = 150
	// multiPhaseMax bounds each phase.
	multiPhaseMax = 90 * time.Second
	// multiCallTimeout bounds one call: a call to a dead node's address
	// goes to another node after it.
	multiCallTimeout = 5 * time.Second
	// multiCheckEvery is how often a client reads its own write back
	// through the query node (min_position: read-your-writes).
	multiCheckEvery = 5
)

// multiAck is an acknowledged transfer.
type multiAck struct {
	ledger   string
	position uint64
}

// multiLoad is what the multi-node test's clients share.
type multiLoad struct {
	mu     sync.Mutex
	acked  map[string]multiAck // by transfer id
	reads  int                 // read-your-writes checks passed
	failed error
}

func (l *multiLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *multiLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = err
	}
}

func (l *multiLoad) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// client sends transfers g-000000, g-000001, ... over the ledgers in turn,
// each until acknowledged, moving to the next node on Unavailable,
// DeadlineExceeded or Canceled; every multiCheckEvery-th it reads back
// through the query node with its position as min_position.
func (l *multiLoad) client(ctx context.Context, g int, ledgers []string, cmds []ledgerv1.CommandServiceClient,
	query ledgerv1.QueryServiceClient) {
	via := g
	for seq := 0; ; seq++ {
		id := fmt.Sprintf("c%d-%06d", g, seq)
		ledger := ledgers[(g+seq)%len(ledgers)]
		var pos uint64
		for pos == 0 {
			if ctx.Err() != nil {
				return
			}
			c, cancel := context.WithTimeout(ctx, multiCallTimeout)
			resp, err := cmds[via%len(cmds)].CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: ledger,
				Transfers: []*ledgerv1.Transfer{transfer(id, "alice", "bob", "1.00", "USD")}})
			cancel()
			if ctx.Err() != nil {
				return // stopped: this attempt's outcome is unknown
			}
			switch code := status.Code(err); code {
			case codes.OK:
				r := resp.GetResults()[0]
				if r.GetCode() != codeCreated && r.GetCode() != codeExists {
					l.fail(fmt.Errorf("%s: %s %s", id, r.GetCode(), r.GetDetail()))
					return
				}
				pos = r.GetPosition()
			case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
				via++
				time.Sleep(retryPause)
			default:
				l.fail(fmt.Errorf("%s via node %d: %w", id, via%len(cmds), err))
				return
			}
		}
		l.mu.Lock()
		l.acked[id] = multiAck{ledger: ledger, position: pos}
		l.mu.Unlock()
		if seq%multiCheckEvery != 0 {
			continue
		}
		c, cancel := context.WithTimeout(ctx, 2*multiCallTimeout)
		got, err := query.GetTransfers(c, &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{id}, MinPosition: pos})
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded:
			// The replica died under the call; the next check reads the primary.
		case err != nil:
			l.fail(fmt.Errorf("read back %s at %d: %w", id, pos, err))
			return
		case len(got.GetTransfers()) != 1 || got.GetTransfers()[0].GetId() != id:
			l.fail(fmt.Errorf("read back %s at %d: %v: not read-your-writes", id, pos, got.GetTransfers()))
			return
		default:
			l.mu.Lock()
			l.reads++
			l.mu.Unlock()
		}
	}
}

// TestMultiNode is the scale-out acceptance test: three ledgerd processes
// (two writer-and-projector nodes, one query node reading a streaming
// replica), a PostgreSQL primary with its replica, and a three-node NATS
// cluster, under a load of single transfers over 20 ledgers sent to every
// node. One writer node is killed (-9), then one NATS node shut down, then
// the replica stopped, each under load: ledgers move to the surviving writer
// node and go on. Afterwards every acknowledged transfer is in the log
// exactly once, each ledger's log is gapless, `audit verify` is clean on
// every ledger, and every read-back through the query node saw its write.
func TestMultiNode(t *testing.T) {
	t.Parallel()
	bin := buildLedgerd(t)
	primary, replica := testenv.ReplicatedPostgres(t)
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: primary.URL()}, discardLogger(), nil))
	natsServers, natsURLs := natsCluster(t)
	key := newKey(t)
	mk := func(id string, args ...string) *node {
		dir := t.TempDir()
		n := &node{bin: bin, pgURL: primary.URL(), natsURL: strings.Join(natsURLs, ","), dataDir: dir,
			logPath: filepath.Join(dir, "ledgerd.log"), key: key, args: append([]string{"-node-id", id}, args...)}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's logs are in %s", id, n.logPath)
			}
		})
		return n
	}
	w1, hw1 := mk("w1", "-roles", "writer,projector").start(t)
	_, hw2 := mk("w2", "-roles", "writer,projector").start(t)
	pq, hq := mk("q", "-roles", "query", "-postgres-replica-url", replica.URL(), "-replica-fallback-after", "2s").start(t)

	ledgers := make([]string, multiLedgers)
	for i := range ledgers {
		ledgers[i] = testenv.Name(t)
		[]*harness{hw1, hw2}[i%2].setup(t, ledgers[i])
	}

	l := &multiLoad{acked: map[string]multiAck{}}
	cmds := []ledgerv1.CommandServiceClient{hq.cmd, hw1.cmd, hw2.cmd}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wg sync.WaitGroup
	for g := range multiClients {
		wg.Add(1)
		go func() { defer wg.Done(); l.client(loadCtx, g, ledgers, cmds, hq.query) }()
	}
	phase := func(what string) {
		t.Helper()
		want := l.count() + multiAcksPerPhase
		began := time.Now()
		testenv.Eventually(t, multiPhaseMax, func() error {
			if err := l.failure(); err != nil {
				t.Fatalf("%s: load: %v", what, err)
			}
			if got := l.count(); got < want {
				return fmt.Errorf("%s: %d transfers acknowledged, want %d", what, got, want)
			}
			return nil
		})
		t.Logf("%s: %d more acknowledged in %s", what, multiAcksPerPhase, time.Since(began).Round(time.Millisecond))
	}
	phase("before the faults")
	w1.kill(t)
	phase("after killing writer node w1")
	natsServers[0].Shutdown()
	phase("after shutting down NATS node n0")
	testenv.NoError(t, replica.Stop(ctx(t)))
	phase("after stopping the replica")
	stopLoad()
	wg.Wait()
	if err := l.failure(); err != nil {
		t.Fatalf("load: %v", err)
	}

	// Every ledger now lives on w2, the writer node left: its writer moved
	// there; the log holds every acknowledged transfer once.
	conn, err := grpc.NewClient(grpcAddrOf(t, pq), hq.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	// q reads through the replica until its check (every second) finds it
	// gone; a call in between is Unavailable, which a client retries.
	var places *ledgerv1.ListPlacementsResponse
	testenv.Eventually(t, multiPhaseMax, func() error {
		var err error
		places, err = ledgerv1.NewAdminServiceClient(conn).ListPlacements(ctx(t), &ledgerv1.ListPlacementsRequest{})
		if status.Code(err) == codes.Unavailable {
			return err
		}
		testenv.NoError(t, err)
		return nil
	})
	writers := map[string]string{}
	for _, p := range places.GetPlacements() {
		writers[p.GetLedger()] = p.GetWriterNode()
	}
	acked := map[string]map[string]uint64{}
	for id, a := range l.acked {
		if acked[a.ledger] == nil {
			acked[a.ledger] = map[string]uint64{}
		}
		acked[a.ledger][id] = a.position
	}
	for _, ledger := range ledgers {
		if writers[ledger] != "w2" {
			t.Errorf("%s: written by %q, want w2", ledger, writers[ledger])
		}
		if dup := hw2.duplicateCommands(t, ledger); len(dup) != 0 {
			t.Errorf("%s: transfers committed more than once: %v", ledger, dup)
		}
		committed := hw2.committedTransfers(t, ledger)
		for id, pos := range acked[ledger] {
			if got, ok := committed[id]; !ok || got != pos {
				t.Errorf("%s: %s acknowledged at %d, in the log at %d (%v)", ledger, id, pos, got, ok)
			}
		}
		head := hw2.head(t, ledger)
		checkGapless(t, hw2, ledger, head)
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out, errOut bytes.Buffer
		env := map[string]string{"LEDGER_ADDR": grpcAddrOf(t, pq), "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": key}
		if code := ctl.Run(c, []string{"audit", "verify"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
			t.Errorf("%s: ledgerctl audit verify: exit %d\nstdout:\n%s\nstderr:\n%s", ledger, code, out.String(), errOut.String())
		}
		cancel()
	}
	t.Logf("%d transfers acknowledged over %d ledgers, %d read back through the query node", len(l.acked), len(ledgers), l.reads)
	if l.reads == 0 {
		t.Error("no read-your-writes check passed")
	}
}

// TestLedgerdOnPartitionedEvents: `ledgerd migrate -partition-events 4`
// turns the events table into partitions by ledger, and ledgerd runs on it
// as before: transfers on several ledgers, their balances, and `audit
// verify` clean.
func TestLedgerdOnPartitionedEvents(t *testing.T) {
	t.Parallel()
	pgURL := testenv.MigratedPostgresURL(t)
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: pgURL, PartitionEvents: 4}, discardLogger(), nil))
	h := startIdle(t, pgURL, newKey(t))
	for range 3 {
		ledger := testenv.Name(t)
		h.setup(t, ledger)
		var pos uint64
		for i := range 5 {
			pos = h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i), "alice", "bob", "1.00", "USD"))
		}
		if got, _ := bobCredits(t, h, ledger, pos); got != "5.00" {
			t.Fatalf("%s: bob's credits %s, want 5.00", ledger, got)
		}
		h.runCtlOK(t, ledger, "audit", "verify")
	}
}
