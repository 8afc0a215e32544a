package daemon_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// natsClusterMax bounds the waits on the NATS cluster: forming (a meta
// leader), and recovering a stream's leader after a node's loss.
const natsClusterMax = 60 * time.Second

// freePort is a TCP port free on loopback a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsCluster starts three embedded NATS servers with JetStream, routed to
// each other, shut down at cleanup; it returns them and their client URLs.
func natsCluster(t *testing.T) ([]*natsbus.Embedded, []string) {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	servers, urls := make([]*natsbus.Embedded, 3), make([]string, 3)
	for i := range servers {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(),
			Cluster: &natsbus.EmbeddedCluster{Name: "ledger-test", ServerName: fmt.Sprintf("n%d", i), Port: ports[i], Routes: routes}})
		testenv.NoError(t, err)
		t.Cleanup(e.Shutdown)
		servers[i], urls[i] = e, e.ClientURL()
	}
	return servers, urls
}

// TestStreamsOnANATSCluster runs ledgerd on a three-node NATS cluster: each
// ledger's stream is created with three replicas, and when the node ledgerd
// is connected to goes, the relay and projections go on through the others:
// every transfer is applied once, in order.
func TestStreamsOnANATSCluster(t *testing.T) {
	t.Parallel()
	servers, urls := natsCluster(t)
	h := startWith(t, func(m *daemon.Main) { m.Config.NATSURL = strings.Join(urls, ",") })
	ledger := testenv.Name(t)
	// The first append may come before the cluster has a meta leader: the
	// stream is created, and the projections catch up, once it has one.
	h.setup(t, ledger)
	var pos uint64
	for i := range 10 {
		pos = h.transferOK(t, ledger, transfer(fmt.Sprintf("a%d", i), "alice", "bob", "1.00", "USD"))
	}
	waitCredits(t, h, ledger, pos, "10.00")

	nc, err := nats.Connect(strings.Join(urls, ","))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	// A JetStream API request may go unanswered while the cluster's meta
	// leader is busy (seen once under a full test run: 90 s without an
	// answer): each try has its own bound, all of them the cluster's.
	var info *jetstream.StreamInfo
	testenv.Eventually(t, natsClusterMax, func() error {
		c, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		defer cancel()
		stream, err := js.Stream(c, natsbus.StreamName(ledger))
		if err != nil {
			return err
		}
		info, err = stream.Info(c)
		return err
	})
	if info.Config.Replicas != 3 {
		t.Fatalf("stream of %s: %d replicas, want 3", ledger, info.Config.Replicas)
	}

	// The node holding the stream's leader goes: the worst one to lose.
	leader := info.Cluster.Leader
	for i, s := range servers {
		if fmt.Sprintf("n%d", i) == leader {
			s.Shutdown()
		}
	}
	for i := range 10 {
		pos = h.transferOK(t, ledger, transfer(fmt.Sprintf("b%d", i), "alice", "bob", "1.00", "USD"))
	}
	waitCredits(t, h, ledger, pos, "20.00")
	lines, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if n := len(lines.GetLines()); n != 20 {
		t.Fatalf("bob's statement: %d lines, want 20 (each transfer once)", n)
	}
	for i, l := range lines.GetLines()[1:] {
		if l.GetPosition() <= lines.GetLines()[i].GetPosition() {
			t.Fatalf("bob's statement out of order at line %d: %d after %d", i+1, l.GetPosition(), lines.GetLines()[i].GetPosition())
		}
	}
}

// waitCredits waits until bob's posted credits at pos are want: the
// projections may wait for the NATS cluster longer than one query's bound.
func waitCredits(t *testing.T, h *harness, ledger string, pos uint64, want string) {
	t.Helper()
	testenv.Eventually(t, natsClusterMax, func() error {
		resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: pos})
		if err != nil {
			return err
		}
		if got := resp.GetBalances()[0].GetCreditsPosted(); got != want {
			return fmt.Errorf("bob's credits %s, want %s", got, want)
		}
		return nil
	})
}
