//go:build chaos

package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/testenv"
)

// The acceptance chaos test (make chaos): two ledgerd processes on one
// PostgreSQL and one NATS server that the test owns (so that it can stop it),
// a load of single transfers retried by id until acknowledged, and three
// faults per round: kill -9 of the lease holder; SIGSTOP of the holder with its
// lease session ended (pg_terminate_backend), SIGCONT later; kill -9 of the
// holder and its restart while NATS is down. After all rounds: every
// acknowledged transfer is in the log exactly once, the log is gapless, the
// balances sum to zero and `ledgerctl audit verify` is clean. The time from
// each fault to the first acknowledged write is logged (median, max).
//
// It is behind the chaos build tag, out of make test: it runs for minutes.

// Limits of the chaos test.
const (
	// chaosRoundsDefault is how many rounds of the three faults run when
	// LEDGER_CHAOS_ROUNDS is not set.
	chaosRoundsDefault = 3
	// chaosClients is how many clients send transfers, one at a time each.
	chaosClients = 8
	// chaosCallTimeout bounds one call: a client whose process is frozen
	// moves to the other after it.
	chaosCallTimeout = 1 * time.Second
	// chaosAcksPerPhase is how many more acknowledgements each phase waits
	// for: before a fault, after it, and while NATS is down.
	chaosAcksPerPhase = 100
	// chaosPhaseMax bounds each wait for acknowledgements or a recovery.
	chaosPhaseMax = 60 * time.Second
)

// chaosCluster is the two ledgerd processes; a restart replaces one.
type chaosCluster struct {
	t      *testing.T
	nodes  [2]*node
	ledger string

	mu    sync.Mutex
	procs [2]*process
	hs    [2]*harness
	addrs [2]string
}

func (c *chaosCluster) start(i int) {
	p, h := c.nodes[i].start(c.t)
	addr := grpcAddrOf(c.t, p)
	c.mu.Lock()
	c.procs[i], c.hs[i], c.addrs[i] = p, h, addr
	c.mu.Unlock()
}

func (c *chaosCluster) harness(i int) *harness {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hs[i]
}

func (c *chaosCluster) proc(i int) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[i]
}

// chaosNATS is the NATS server the test stops and starts again, on one
// address and store directory.
type chaosNATS struct {
	dir, host string
	port      int
	srv       *natsbus.Embedded
}

func (n *chaosNATS) start(t *testing.T) {
	t.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: n.dir, Host: n.host, Port: n.port})
	testenv.NoError(t, err)
	n.srv = e
}

func (n *chaosNATS) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv = nil
	}
}

func TestChaos(t *testing.T) {
	rounds := chaosRoundsDefault
	if s := os.Getenv("LEDGER_CHAOS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		testenv.NoError(t, err)
		rounds = n
	}
	host, portStr, err := net.SplitHostPort(freeAddr(t))
	testenv.NoError(t, err)
	port, err := strconv.Atoi(portStr)
	testenv.NoError(t, err)
	ns := &chaosNATS{dir: t.TempDir(), host: host, port: port}
	ns.start(t)
	t.Cleanup(ns.stop)

	bin := buildLedgerd(t)
	first := newNode(t, bin)
	first.natsURL = "nats://" + net.JoinHostPort(host, portStr)
	second := *first
	second.dataDir = t.TempDir()
	second.logPath = filepath.Join(second.dataDir, "ledgerd.log")
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := os.ReadFile(second.logPath); err == nil {
				t.Logf("second ledgerd's logs:\n%s", logs)
			}
		}
	})
	c := &chaosCluster{t: t, nodes: [2]*node{first, &second}, ledger: testenv.Name(t)}
	c.start(0)
	c.start(1)
	accounts := c.setup()

	l := &failoverLoad{acked: map[string]failoverAck{}}
	// Canceled too: a call in flight when its process is killed.
	to := loadTarget{ledger: c.ledger, cmd: func(via int) ledgerv1.CommandServiceClient { return c.harness(via).cmd },
		callTimeout: chaosCallTimeout, retry: []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Canceled}}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wg sync.WaitGroup
	for g := range chaosClients {
		wg.Add(1)
		go func() { defer wg.Done(); l.client(loadCtx, to, g, accounts[1+g]) }()
	}
	waitAcks := func(what string, n int) {
		t.Helper()
		testenv.Eventually(t, chaosPhaseMax, func() error {
			if err := l.failure(); err != nil {
				t.Fatalf("load: %v", err)
			}
			if got := l.count(); got < n {
				return fmt.Errorf("%s: %d transfers acknowledged, want %d", what, got, n)
			}
			return nil
		})
	}
	// firstAckAfter is how long after at the first transfer was
	// acknowledged by the process other than faulted (a reply sent by the
	// faulted process just before the fault does not count).
	firstAckAfter := func(at time.Time, faulted int) time.Duration {
		t.Helper()
		var d time.Duration
		testenv.Eventually(t, chaosPhaseMax, func() error {
			first, ok := l.firstAckAfter(at, 1-faulted)
			if !ok {
				return errors.New("no transfer acknowledged since the fault")
			}
			d = first.Sub(at)
			return nil
		})
		return d
	}

	took := map[string][]time.Duration{}
	for round := range rounds {
		// (a) kill -9 of the holder; it is started again as the standby.
		waitAcks("before the kill", l.count()+chaosAcksPerPhase)
		holder := c.holder(l)
		at := time.Now()
		c.proc(holder).kill(t)
		took["kill -9"] = append(took["kill -9"], firstAckAfter(at, holder))
		waitAcks("after the kill", l.count()+chaosAcksPerPhase)
		c.start(holder)

		// (b) SIGSTOP of the holder, its lease session ended; SIGCONT once
		// the standby has served for a while.
		waitAcks("before the freeze", l.count()+chaosAcksPerPhase)
		holder = c.holder(l)
		frozen := c.proc(holder)
		testenv.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))
		at = time.Now()
		c.endLeaseSession()
		took["SIGSTOP, lease session ended"] = append(took["SIGSTOP, lease session ended"], firstAckAfter(at, holder))
		waitAcks("while the old holder is frozen", l.count()+chaosAcksPerPhase)
		testenv.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
		waitAcks("after SIGCONT", l.count()+chaosAcksPerPhase)

		// (c) NATS down: commands go on; the holder is killed and started
		// again while NATS is down; then NATS comes back.
		ns.stop()
		waitAcks("NATS down", l.count()+chaosAcksPerPhase)
		holder = c.holder(l)
		at = time.Now()
		c.proc(holder).kill(t)
		took["kill -9 and restart, NATS down"] = append(took["kill -9 and restart, NATS down"], firstAckAfter(at, holder))
		c.start(holder) // ready without NATS
		waitAcks("after the restart, NATS down", l.count()+chaosAcksPerPhase)
		ns.start(t)
		t.Logf("round %d of %d done: %d transfers acknowledged", round+1, rounds, l.count())
	}
	stopLoad()
	wg.Wait()
	if err := l.failure(); err != nil {
		t.Fatalf("load: %v", err)
	}
	for _, name := range []string{"kill -9", "SIGSTOP, lease session ended", "kill -9 and restart, NATS down"} {
		ds := slices.Clone(took[name])
		slices.Sort(ds)
		t.Logf("fault to first acknowledged write, %s: median %s, max %s over %d runs %v", name,
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), len(ds), ds)
	}
	c.verify(l, accounts)
}

// setup defines USD and opens src and one destination per client.
func (c *chaosCluster) setup() []string {
	t := c.t
	hs := [2]*harness{c.harness(0), c.harness(1)}
	onWriter(t, hs, func(h *harness) error {
		resp, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: c.ledger, Code: "USD", Scale: 2})
		if err == nil && resp.GetResult().GetCode() != codeCreated && resp.GetResult().GetCode() != codeExists {
			t.Fatalf("define USD: %s %s", resp.GetResult().GetCode(), resp.GetResult().GetDetail())
		}
		return err
	})
	accounts := []string{"src"}
	opens := []*ledgerv1.Account{usdAccount("src", nil, nil)}
	for i := range chaosClients {
		accounts = append(accounts, fmt.Sprintf("dst:%d", i))
		opens = append(opens, usdAccount(accounts[i+1], nil, nil))
	}
	onWriter(t, hs, func(h *harness) error {
		resp, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: c.ledger, Accounts: opens})
		for _, r := range resp.GetResults() {
			if r.GetCode() != codeCreated && r.GetCode() != codeExists {
				t.Fatalf("open %s: %s %s", r.GetId(), r.GetCode(), r.GetDetail())
			}
		}
		return err
	})
	return accounts
}

// holder is the process that writes the ledger: the one holding its writer
// lease, as the registry says (either process acknowledges transfers: the
// other forwards them).
func (c *chaosCluster) holder(*failoverLoad) int {
	t := c.t
	t.Helper()
	holder := -1
	testenv.Eventually(t, chaosPhaseMax, func() (err error) {
		c.mu.Lock()
		addrs, key := c.addrs[:], c.hs[0].key
		c.mu.Unlock()
		holder, err = writerIndex(t, key, c.ledger, addrs)
		return err
	})
	return holder
}

// endLeaseSession terminates the session holding the ledger's lease, found
// by its advisory lock, as an operator (or a network partition) would.
func (c *chaosCluster) endLeaseSession() {
	t := c.t
	t.Helper()
	conn, err := pgx.Connect(ctx(t), c.nodes[0].pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(pg_terminate_backend(a.pid)) FROM pg_locks l
		JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $2
		AND (l.classid::bigint << 32 | l.objid::bigint) = $1
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		eventstore.LeaseKey(c.ledger), eventstore.LeaseApplicationName).Scan(&n))
	if n != 1 {
		t.Fatalf("terminated %d lease sessions of %s, want 1", n, c.ledger)
	}
}

// verify checks the log against what was acknowledged, the balances and the
// hash chain (ledgerctl audit verify), through a process that serves.
func (c *chaosCluster) verify(l *failoverLoad, accounts []string) {
	t := c.t
	acked := l.snapshot()
	h := c.harness(0)
	if dup := h.duplicateCommands(t, c.ledger); len(dup) != 0 {
		t.Errorf("transfers committed more than once: %v", dup)
	}
	committed := h.committedTransfers(t, c.ledger)
	var missing []string
	for id, a := range acked {
		pos, ok := committed[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case pos != a.position:
			t.Errorf("%s acknowledged (%s via process %d) at position %d, committed at %d", id, a.code, a.via, a.position, pos)
		}
	}
	if len(missing) != 0 {
		slices.Sort(missing)
		t.Errorf("%d acknowledged transfers are not in the log: %v", len(missing), missing[:min(len(missing), 10)])
	}
	head := h.head(t, c.ledger)
	checkGapless(t, h, c.ledger, head)
	t.Logf("%d transfers acknowledged, %d committed, head %d", len(acked), len(committed), head)

	// Projections caught up once NATS came back, on both processes.
	for i := range 2 {
		var bals map[string]*ledgerv1.Balance
		testenv.Eventually(t, chaosPhaseMax, func() error {
			qctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.harness(i).query.GetBalances(qctx, &ledgerv1.GetBalancesRequest{Ledger: c.ledger,
				Accounts: accounts, MinPosition: head})
			if err != nil {
				return err
			}
			bals = map[string]*ledgerv1.Balance{}
			for _, b := range resp.GetBalances() {
				bals[b.GetAccount()] = b
			}
			return nil
		})
		var sum int64
		for _, id := range accounts {
			sum += cents(t, bals[id].GetBalance())
		}
		if want := int64(len(committed)) * 100; sum != 0 || cents(t, bals["src"].GetDebitsPosted()) != want {
			t.Errorf("process %d: balances sum to %d cents, src debited %s; want 0 and %d cents", i, sum,
				bals["src"].GetDebitsPosted(), want)
		}
	}

	actx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	c.mu.Lock()
	env := map[string]string{"LEDGER_ADDR": c.addrs[0], "LEDGER_LEDGER": c.ledger, "LEDGER_API_KEY": h.key}
	c.mu.Unlock()
	if code := ctl.Run(actx, []string{"audit", "verify"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Errorf("ledgerctl audit verify: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	t.Logf("audit verify: %s", bytes.TrimSpace(out.Bytes()))
}
