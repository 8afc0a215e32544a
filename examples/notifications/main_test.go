package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

// childEnv makes the test binary run the service instead of the tests:
// the kill -9 test runs the service as a process of its own, configured
// through NOTIFY_* variables, and flags in NOTIFY_CHILD_ARGS.
const childEnv = "NOTIFY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(serve(strings.Fields(os.Getenv("NOTIFY_CHILD_ARGS")), os.Getenv))
	}
	testenv.Main(m)
}

// The issue's acceptance: "the consumer, killed with kill -9 at random,
// applies every event exactly once". The service runs as a process of its
// own while transfers flow, is killed with SIGKILL at random moments, and
// restarted; at the end each posting touching a user has given exactly one
// notification.
func TestKill9AppliesEveryEventExactlyOnce(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed))
	const users, kills, transfersMax = 8, 6, 20_000
	l := ledgerdtest.Start(t)
	ledger := testenv.Name(t)
	l.Setup(t, ledger, users)
	svcURL := testenv.PostgresURL(t)
	logFile, err := os.Create(t.TempDir() + "/service.log")
	testenv.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("service log:\n%s", tail(string(b), 4000))
		}
	})
	env := append(os.Environ(), childEnv+"=1", "NOTIFY_LEDGER="+ledger, "NOTIFY_POSTGRES_URL="+svcURL,
		"NOTIFY_NATS_URL="+l.NATSURL, "NOTIFY_LEDGERD="+l.Main.GRPCAddr(), "NOTIFY_API_KEY="+l.Key,
		"NOTIFY_CHILD_ARGS=-batch-max=8 -ledgerd-insecure") // the test ledgerd speaks plaintext
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
		testenv.NoError(t, cmd.Start())
		return cmd
	}

	t.Log("transfers flow while the service is killed with SIGKILL and restarted")
	var (
		mu   sync.Mutex
		want = map[string]int{} // transfer|user|direction: rows expected
		head uint64
		n    int
	)
	frnd := rand.New(rand.NewPCG(seed+1, seed))
	// send creates one request of 1..10 transfers, to a user from the bank
	// or from another user, and notes the notifications they make.
	send := func() {
		k := 1 + frnd.IntN(10)
		ts := make([]*ledgerv1.Transfer, 0, k)
		exp := map[string]int{}
		for range k {
			id := fmt.Sprintf("t%d", n)
			n++
			to := 1 + frnd.IntN(users)
			from := "bank"
			if frnd.IntN(3) > 0 {
				f := 1 + (to+frnd.IntN(users-1))%users // another user
				from = ledgerdtest.UserAccount(f)
				exp[fmt.Sprintf("%s|%d|out", id, f)]++
			}
			exp[fmt.Sprintf("%s|%d|in", id, to)]++
			ts = append(ts, ledgerdtest.Transfer(id, from, ledgerdtest.UserAccount(to), "1.00"))
		}
		pos := l.Transfers(t, ledger, ts...)
		mu.Lock()
		defer mu.Unlock()
		head = pos
		for key, c := range exp {
			want[key] += c
		}
	}
	stopCh, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n < transfersMax {
			select {
			case <-stopCh:
				return
			default:
				send()
			}
		}
	}()
	pool, err := pgxpool.New(ledgerdtest.Ctx(t), svcURL)
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, migrate(ledgerdtest.Ctx(t), pool)) // the service's own: checkpoints are read from the start
	for i := range kills {
		cmd := start()
		time.Sleep(time.Duration(200+rnd.IntN(800)) * time.Millisecond)
		testenv.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait() // killed: the error says so
		t.Logf("kill %d: checkpoint at %d", i+1, checkpoint(t, pool, ledger))
	}
	close(stopCh)
	<-done

	t.Log("restarted once more: it catches up")
	cmd := start()
	for range 5 { // and consumes what comes: it is up
		send()
	}
	last := head
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := checkpoint(t, pool, ledger); got != last {
			return fmt.Errorf("checkpoint at %d, want %d", got, last)
		}
		return nil
	})
	testenv.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Errorf("service on SIGTERM: %v, want a clean exit", err)
	}

	rows, err := pool.Query(ledgerdtest.Ctx(t), `SELECT transfer_id || '|' || user_id || '|' || direction, count(*)
		FROM notifications GROUP BY 1`)
	testenv.NoError(t, err)
	got := map[string]int{}
	for rows.Next() {
		var (
			key string
			n   int
		)
		testenv.NoError(t, rows.Scan(&key, &n))
		got[key] = n
	}
	testenv.NoError(t, rows.Err())
	if len(want) < 100 {
		t.Fatalf("only %d notifications expected: too few transfers flowed to test anything", len(want))
	}
	bad := 0
	for key, n := range want {
		if got[key] != n && bad < 10 {
			t.Errorf("notification %s: %d rows, want %d", key, got[key], n)
			bad++
		}
	}
	for key, n := range got {
		if want[key] == 0 && bad < 10 {
			t.Errorf("notification %s: %d rows, want none", key, n)
			bad++
		}
	}
	if !t.Failed() {
		t.Logf("%d notifications, each once, over %d kills", len(want), kills)
	}
}

func checkpoint(t *testing.T, pool *pgxpool.Pool, ledger string) uint64 {
	t.Helper()
	var pos int64
	err := pool.QueryRow(ledgerdtest.Ctx(t), `SELECT coalesce(max(position), 0) FROM ledger_consumer_checkpoints
		WHERE consumer = 'notifications' AND ledger = $1`, ledger).Scan(&pos)
	testenv.NoError(t, err)
	return uint64(pos)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
