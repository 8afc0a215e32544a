package daemon_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestStartWhileNATSDown starts ledgerd with a NATS URL nothing listens on
// yet: it starts, says on /readyz and ledger_nats_connected that NATS is
// awaited, and serves commands; once a NATS server comes up on that port the
// relay and projections catch up and a read-your-writes query answers. Before,
// ledgerd refused to start ("no servers available").
func TestStartWhileNATSDown(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	host, portStr, err := net.SplitHostPort(addr)
	testenv.NoError(t, err)
	port, err := strconv.Atoi(portStr)
	testenv.NoError(t, err)

	h := &harness{pgURL: testenv.MigratedPostgresURL(t), key: newKey(t)}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: h.pgURL, NATSURL: "nats://" + addr, GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: h.key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	h.run(t)

	ready := httpGet(t, "http://"+h.m.HTTPAddr()+"/readyz")
	if !strings.HasPrefix(ready, "ready\n") || !strings.Contains(ready, "nats: ") {
		t.Errorf("/readyz with NATS down: %q, want ready and what waits for NATS", ready)
	}
	if got := natsConnected(t, h); got != "0" {
		t.Errorf("ledger_nats_connected = %s with NATS down, want 0", got)
	}

	ledger := testenv.Name(t)
	h.setup(t, ledger)
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "10.00", "USD")}})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	pos := resp.GetResults()[0].GetPosition()

	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), Host: host, Port: port})
	testenv.NoError(t, err)
	t.Cleanup(e.Shutdown)
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := natsConnected(t, h); got != "1" {
			return fmt.Errorf("ledger_nats_connected = %s, want 1", got)
		}
		return nil
	})
	// min_position waits (bounded) for the balances projection, which reads
	// the stream the relay fills: both had to find NATS.
	testenv.Eventually(t, 60*time.Second, func() error {
		qctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := h.query.GetBalances(qctx, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice", "bob"}, MinPosition: pos})
		if err != nil {
			return err
		}
		for _, b := range got.GetBalances() {
			if b.GetAccount() == "bob" && b.GetBalance() != "10.00" {
				return fmt.Errorf("bob's balance %s, want 10.00", b.GetBalance())
			}
		}
		return nil
	})
	if ready := httpGet(t, "http://"+h.m.HTTPAddr()+"/readyz"); ready != "ready\n" {
		t.Errorf("/readyz with NATS up: %q, want ready", ready)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	testenv.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testenv.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// natsConnected is the value of ledger_nats_connected on /metrics.
func natsConnected(t *testing.T, h *harness) string {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, "http://"+h.m.HTTPAddr()+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, "ledger_nats_connected "); ok {
			return v
		}
	}
	t.Fatal("no ledger_nats_connected on /metrics")
	return ""
}
