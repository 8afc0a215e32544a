package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// Fault tests: ledgerd as a separate process, killed (-9) or stopped while
// it works, then started again on the same PostgreSQL and NATS.

// startTimeout bounds a ledgerd start, to /readyz.
const startTimeout = 30 * time.Second

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	bin := buildLedgerd(t) // once for the subtests; removed after them
	t.Run("retried batch after kill", func(t *testing.T) {
		t.Parallel()
		testRetriedBatchAfterKill(t, newNode(t, bin))
	})
	for _, stop := range []struct {
		name string
		stop func(*process, *testing.T)
	}{{"graceful stop", (*process).terminate}, {"kill", (*process).kill}} {
		t.Run("hold expires once on restart after "+stop.name, func(t *testing.T) {
			t.Parallel()
			testHoldExpiresOnRestart(t, newNode(t, bin), stop.stop)
		})
	}
}

func testRetriedBatchAfterKill(t *testing.T, n *node) {
	p, h := n.start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	const dsts, total, chunk = 10, 5000, 500
	accounts := []string{"src"}
	var opens []*ledgerv1.Account
	for i := range dsts {
		accounts = append(accounts, fmt.Sprintf("dst:%d", i))
		opens = append(opens, usdAccount(accounts[i+1], nil, nil))
	}
	mustCreated(t, h.open(t, ledger, append(opens, usdAccount("src", nil, nil))...)...)
	batch := make([]*ledgerv1.Transfer, total)
	for i := range batch {
		batch[i] = transfer(fmt.Sprintf("t:%05d", i), "src", accounts[1+i%dsts], "1.00", "USD")
	}

	// Send the batch in chunks, one after the other; kill ledgerd as soon as
	// the first is acknowledged, while the next is in flight.
	acked := make(chan []*ledgerv1.ItemResult, total/chunk)
	sent := make(chan error, 1)
	cmd := h.cmd
	go func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for from := 0; from < total; from += chunk {
			resp, err := cmd.CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: batch[from : from+chunk]})
			if err != nil {
				sent <- err
				return
			}
			acked <- resp.GetResults()
		}
		sent <- nil
	}()
	var ackedResults []*ledgerv1.ItemResult
	select {
	case rs := <-acked:
		ackedResults = rs
	case err := <-sent:
		t.Fatalf("first chunk: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("first chunk not acknowledged in a minute")
	}
	p.kill(t)
	err := <-sent
	close(acked)
	for rs := range acked {
		ackedResults = append(ackedResults, rs...)
	}
	t.Logf("killed with %d transfers acknowledged (sender: %v)", len(ackedResults), err)
	mustCreated(t, ackedResults...)

	committed := h.committedTransfers(t, ledger)
	t.Logf("%d of %d transfers committed before the kill", len(committed), total)
	for _, r := range ackedResults {
		if _, ok := committed[r.GetId()]; !ok {
			t.Errorf("acknowledged transfer %s is not in the log", r.GetId())
		}
	}

	_, h = n.start(t)
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: batch})
	testenv.NoError(t, err)
	var maxPos uint64
	for i, r := range resp.GetResults() {
		id := batch[i].GetId()
		pos, was := committed[id]
		switch {
		case r.GetId() != id || r.GetIndex() != uint32(i):
			t.Fatalf("result %d is for %s (index %d), want %s", i, r.GetId(), r.GetIndex(), id)
		case was && (r.GetCode() != codeExists || r.GetPosition() != pos):
			t.Errorf("%s, committed at %d before the kill: %s at %d, want EXISTS at %d", id, pos, r.GetCode(), r.GetPosition(), pos)
		case !was && r.GetCode() != codeCreated:
			t.Errorf("%s, not committed before the kill: %s (%s), want CREATED", id, r.GetCode(), r.GetDetail())
		}
		maxPos = max(maxPos, r.GetPosition())
	}

	if after := h.committedTransfers(t, ledger); len(after) != total {
		t.Errorf("%d distinct transfers in the log, want %d", len(after), total)
	}
	if dup := h.duplicateCommands(t, ledger); len(dup) != 0 {
		t.Errorf("transfers committed more than once: %v", dup)
	}
	bals := h.balances(t, ledger, maxPos, accounts...)
	var sum, credits int64
	for _, id := range accounts {
		b, ok := bals[id]
		if !ok {
			t.Fatalf("no balance for %s", id)
		}
		sum += cents(t, b.GetBalance())
		if id != "src" {
			credits += cents(t, b.GetCreditsPosted())
		}
	}
	if sum != 0 || credits != total*100 || bals["src"].GetDebitsPosted() != "5000.00" {
		t.Errorf("balances sum to %d cents, destinations credited %d cents, src debited %s; want 0, %d, 5000.00",
			sum, credits, bals["src"].GetDebitsPosted(), total*100)
	}
}

func testHoldExpiresOnRestart(t *testing.T, n *node, stop func(*process, *testing.T)) {
	p, h := n.start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, pendingTransfer("hold", "alice", "bob", "7.00", "USD", 2))
	h.checkBalances(t, "held", ledger, pos, map[string]string{
		"alice": "0.00 -7.00 | 0.00/0.00 | 7.00/0.00",
		"bob":   "0.00 0.00 | 0.00/0.00 | 0.00/7.00",
	})
	expiresAt := h.expiresAt(t, ledger, "hold")
	stop(p, t)
	if time.Now().Before(expiresAt) {
		if got := h.countEvents(t, ledger, "PendingExpired", "hold"); got != 0 {
			t.Fatalf("%d PendingExpired events before the timeout", got)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if now := time.Now(); now.Before(expiresAt) {
			return fmt.Errorf("the hold is due at %s, it is %s", expiresAt.Format(time.StampMicro), now.Format(time.StampMicro))
		}
		return nil
	})

	p, h = n.start(t)
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := h.countEvents(t, ledger, "PendingExpired", "hold"); got != 1 {
			return fmt.Errorf("%d PendingExpired events for the hold, want 1", got)
		}
		return nil
	})
	h.checkBalances(t, "expired", ledger, h.head(t, ledger), map[string]string{"alice": zero, "bob": zero})
	checkResults(t, "post after expiry", h.post(t, ledger, &ledgerv1.PostPending{Id: "hold:post", PendingId: "hold"}),
		want{codePendingExpired, "pending_id"})

	// Once more, killed: the expiry is in the log and is not repeated.
	p.kill(t)
	_, h = n.start(t)
	checkResults(t, "after another restart", h.void(t, ledger, &ledgerv1.VoidPending{Id: "hold:void", PendingId: "hold"}),
		want{codePendingExpired, "pending_id"})
	if got := h.countEvents(t, ledger, "PendingExpired", "hold"); got != 1 {
		t.Errorf("%d PendingExpired events for the hold after two restarts, want 1", got)
	}
	h.checkBalances(t, "still released", ledger, h.head(t, ledger), map[string]string{"alice": zero, "bob": zero})
}

// committedTransfers returns the ledger's TransferCommitted events: position
// by command id.
func (h *harness) committedTransfers(t *testing.T, ledger string) map[string]uint64 {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT command_id, position FROM events WHERE ledger = $1 AND type = 'TransferCommitted'`, ledger)
	testenv.NoError(t, err)
	out := map[string]uint64{}
	for rows.Next() {
		var (
			id  string
			pos int64
		)
		testenv.NoError(t, rows.Scan(&id, &pos))
		out[id] = uint64(pos)
	}
	testenv.NoError(t, rows.Err())
	return out
}

// duplicateCommands returns the command ids of TransferCommitted events that
// appear more than once (at most 10).
func (h *harness) duplicateCommands(t *testing.T, ledger string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT command_id FROM events WHERE ledger = $1 AND type = 'TransferCommitted'
		GROUP BY command_id HAVING count(*) > 1 ORDER BY command_id LIMIT 10`, ledger)
	testenv.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	return ids
}

// expiresAt reads a pending transfer's expiry from its event.
func (h *harness) expiresAt(t *testing.T, ledger, id string) time.Time {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var s string
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT payload->>'expires_at' FROM events
		WHERE ledger = $1 AND type = 'TransferPending' AND command_id = $2`, ledger, id).Scan(&s))
	at, err := time.Parse(time.RFC3339Nano, s)
	testenv.NoError(t, err)
	return at
}

// buildLedgerd builds ./cmd/ledgerd into the test's temporary directory.
func buildLedgerd(t *testing.T) string {
	t.Helper()
	root, err := os.Getwd()
	testenv.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Fatal("no go.mod above the test's directory")
		}
		root = parent
	}
	bin := filepath.Join(t.TempDir(), "ledgerd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ledgerd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ledgerd: %v\n%s", err, out)
	}
	return bin
}

// node is where successive ledgerd processes of a test run: one database,
// the package's NATS server, one data directory and log file.
type node struct {
	bin, pgURL, natsURL, dataDir, logPath string
	// key is the -admin-key every process of the node is given.
	key string
	// args are more flags for its processes (roles, a replica).
	args []string
}

func newNode(t *testing.T, bin string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{bin: bin, pgURL: testenv.MigratedPostgresURL(t), natsURL: testenv.NATSURL(t), dataDir: dir,
		logPath: filepath.Join(dir, "ledgerd.log"), key: newKey(t)}
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := os.ReadFile(n.logPath); err == nil {
				t.Logf("ledgerd logs:\n%s", logs)
			}
		}
	})
	return n
}

// process is one ledgerd process.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// start runs ledgerd on free ports, waits until /readyz answers and returns
// a client harness for it. The process is killed when the test ends.
func (n *node) start(t *testing.T) (*process, *harness) {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	logs, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	testenv.NoError(t, err)
	defer logs.Close() // the child keeps its own descriptor
	cmd := exec.Command(n.bin, "-postgres-url", n.pgURL, "-nats-url", n.natsURL, "-grpc-addr", grpcAddr,
		"-http-addr", httpAddr, "-data-dir", n.dataDir, "-postgres-conns-max", "8", "-log-level", "debug")
	cmd.Args = append(cmd.Args, n.args...)
	cmd.Env = append(os.Environ(), "LEDGER_ADMIN_KEY="+n.key) // not a flag: flags show in ps
	cmd.Stdout, cmd.Stderr = logs, logs
	testenv.NoError(t, cmd.Start())
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill(t) })

	testenv.Eventually(t, startTimeout, func() error {
		select {
		case <-p.exited:
			t.Fatalf("ledgerd exited while starting: %v", p.waitErr)
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %d", resp.StatusCode)
		}
		return nil
	})
	h := &harness{pgURL: n.pgURL, key: n.key}
	conn, err := grpc.NewClient(grpcAddr, h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.cmd, h.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	return p, h
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill ledgerd: %v", err)
	}
	<-p.exited
}

// terminate stops the process with SIGTERM, as an operator would, and waits
// for a clean exit.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	testenv.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(startTimeout):
		t.Fatal("ledgerd did not stop within 30s of SIGTERM")
	}
	if p.waitErr != nil {
		t.Errorf("ledgerd after SIGTERM: %v", p.waitErr)
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	addr := l.Addr().String()
	testenv.NoError(t, l.Close())
	return addr
}
