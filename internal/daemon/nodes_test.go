package daemon_test

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// nodeMax bounds each wait of the tests below for a node to act: a
// heartbeat (2 s), a projector lease found free (1 s between tries, or the
// 5 s sweep), under the race detector on two cores.
const nodeMax = 30 * time.Second

// startNode runs a ledgerd with roles on the database at pgURL (another
// node's), with the same admin key.
func startNode(t *testing.T, pgURL, key, id string, roles daemon.Roles) *harness {
	t.Helper()
	h := &harness{pgURL: pgURL, key: key}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key, Roles: roles, NodeID: id},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	h.run(t)
	return h
}

// admin is an AdminService client of h's ledgerd.
func (h *harness) adminClient(t *testing.T) ledgerv1.AdminServiceClient {
	t.Helper()
	return ledgerv1.NewAdminServiceClient(h.conn(t))
}

// placement is the ledger's placement as h's ledgerd answers it.
func placement(t *testing.T, h *harness, ledger string) *ledgerv1.Placement {
	t.Helper()
	resp, err := h.adminClient(t).ListPlacements(ctx(t), &ledgerv1.ListPlacementsRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if len(resp.GetPlacements()) != 1 {
		t.Fatalf("placements of %s: %v", ledger, resp.GetPlacements())
	}
	return resp.GetPlacements()[0]
}

// wantUnavailable checks that err is Unavailable and names the missing role.
func wantUnavailable(t *testing.T, what string, err error, says string) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), says) {
		t.Fatalf("%s: %v, want Unavailable saying %q", what, err, says)
	}
}

// TestRolesSplitAcrossNodes runs a writer, a projector and a query node on
// one database and NATS server: the writer decides the commands (sent to
// it, or to the query node, which forwards them), the query node alone
// answers queries, and the projector node alone runs the ledger's relay
// and projections, so a query on the query node with the command's position
// as min_position sees the command. The registry shows who does what. When
// the projector node stops, a new one takes the projector lease over and
// the read models go on from the checkpoint, every transfer once.
func TestRolesSplitAcrossNodes(t *testing.T) {
	t.Parallel()
	first := start(t) // migrates the database; stopped below, it only set things up
	first.m.Close()
	pgURL, key := first.pgURL, first.key
	w := startNode(t, pgURL, key, "w", daemon.Roles{Writer: true})
	p := startNode(t, pgURL, key, "p", daemon.Roles{Projector: true})
	q := startNode(t, pgURL, key, "q", daemon.Roles{Query: true})
	ledger := testenv.Name(t)

	_, err := w.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger})
	wantUnavailable(t, "a query to the writer node", err, "query role")
	// A command sent to the query node goes to the writer node, once the
	// query node has heard of it (its heartbeat, every 2 s).
	testenv.Eventually(t, nodeMax, func() error {
		_, err := q.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: testenv.Name(t), Code: "USD", Scale: 2})
		return err
	})
	w.setup(t, ledger)
	var pos uint64
	for i := range 5 {
		pos = w.transferOK(t, ledger, transfer(strings.Repeat("t", i+1), "alice", "bob", "1.00", "USD"))
	}
	bal, err := q.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: pos})
	testenv.NoError(t, err)
	if got := bal.GetBalances()[0].GetCreditsPosted(); got != "5.00" {
		t.Fatalf("bob's credits on the query node: %s, want 5.00", got)
	}
	pl := placement(t, q, ledger)
	if pl.GetWriterNode() != "w" || pl.GetProjectorNode() != "p" || pl.GetHead() < pos {
		t.Fatalf("placement: %v, want writer w, projector p, head at least %d", pl, pos)
	}

	nodes, err := w.adminClient(t).ListNodes(ctx(t), &ledgerv1.ListNodesRequest{})
	testenv.NoError(t, err)
	byID := map[string]*ledgerv1.Node{}
	for _, n := range nodes.GetNodes() {
		byID[n.GetId()] = n
	}
	for id, roles := range map[string][]string{"w": {"writer"}, "p": {"projector"}, "q": {"query"}} {
		n := byID[id]
		if n == nil || !slices.Equal(n.GetRoles(), roles) || !n.GetLive() || n.GetDraining() || n.GetGrpcAddr() == "" {
			t.Fatalf("node %s: %v, want live, roles %v", id, n, roles)
		}
	}
	// Two ledgers: this one and the one created through the query node.
	if byID["w"].GetWriterLeases() != 2 || byID["p"].GetProjectorLeases() < 1 || byID["q"].GetWriterLeases()+byID["q"].GetProjectorLeases() != 0 {
		t.Fatalf("leases: w %v, p %v, q %v", byID["w"], byID["p"], byID["q"])
	}
	// ledgerctl shows the same, from any node.
	out := q.runCtlOK(t, ledger, "ledgers", ledger)
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 8 || f[0] != ledger || f[3] != "w" || f[5] != "p" {
		t.Fatalf("ledgerctl ledgers:\n%s", out)
	}
	out = q.runCtlOK(t, ledger, "nodes")
	for _, want := range []string{"w  ", "writer", "projector", "query", "live"} {
		if !strings.Contains(out, want) {
			t.Fatalf("ledgerctl nodes lacks %q:\n%s", want, out)
		}
	}

	// The projector node goes; another takes its ledgers as appends come.
	p.m.Close()
	p2 := startNode(t, pgURL, key, "p2", daemon.Roles{Projector: true})
	for i := range 5 {
		pos = w.transferOK(t, ledger, transfer(strings.Repeat("u", i+1), "alice", "bob", "1.00", "USD"))
	}
	bal, err = q.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: pos})
	testenv.NoError(t, err)
	if got := bal.GetBalances()[0].GetCreditsPosted(); got != "10.00" {
		t.Fatalf("bob's credits after the projector moved: %s, want 10.00", got)
	}
	if pl := placement(t, p2, ledger); pl.GetProjectorNode() != "p2" {
		t.Fatalf("placement after the projector moved: %v, want projector p2", pl)
	}
	lines, err := q.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if n := len(lines.GetLines()); n != 10 {
		t.Fatalf("bob's statement: %d lines, want 10 (each transfer once)", n)
	}
}

// TestDrainMovesTheWriter drains the node that writes a ledger: its
// writer's lease goes, and the other writer node takes the ledger on the next
// command, sent to either; undrained, it takes ledgers again.
func TestDrainMovesTheWriter(t *testing.T) {
	t.Parallel()
	a := start(t)
	b := startNode(t, a.pgURL, a.key, "b", daemon.AllRoles)
	ledger := testenv.Name(t)
	a.setup(t, ledger)
	a.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD"))
	aID := placement(t, b, ledger).GetWriterNode()
	if aID == "" || aID == "b" {
		t.Fatalf("writer of %s: %q, want a's", ledger, aID)
	}

	admin := b.adminClient(t)
	resp, err := admin.DrainNode(ctx(t), &ledgerv1.DrainNodeRequest{Node: aID, Drain: true})
	testenv.NoError(t, err)
	if !resp.GetNode().GetDraining() {
		t.Fatalf("drain answered %v", resp.GetNode())
	}
	// Draining, a stops its writer; commands sent to it go to b.
	testenv.Eventually(t, nodeMax, func() error {
		resp, err := a.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
			Transfers: []*ledgerv1.Transfer{transfer("t2", "alice", "bob", "1.00", "USD")}})
		if err != nil {
			return err
		}
		if c := resp.GetResults()[0].GetCode(); c != codeCreated && c != codeExists {
			return fmt.Errorf("t2: %s", c)
		}
		if pl := placement(t, b, ledger); pl.GetWriterNode() != "b" {
			return fmt.Errorf("writer %q", pl.GetWriterNode())
		}
		return nil
	})
	if pl := placement(t, b, ledger); pl.GetWriterNode() != "b" {
		t.Fatalf("writer after the drain: %v, want b", pl)
	}
	n := 0
	testenv.Eventually(t, nodeMax, func() error { // a's projector lease goes to b
		n++
		b.transferOK(t, ledger, transfer("more-"+strconv.Itoa(n), "alice", "bob", "0.01", "USD"))
		if pl := placement(t, b, ledger); pl.GetProjectorNode() != "b" {
			return fmt.Errorf("projector %q", pl.GetProjectorNode())
		}
		return nil
	})

	_, err = admin.DrainNode(ctx(t), &ledgerv1.DrainNodeRequest{Node: aID, Drain: false})
	testenv.NoError(t, err)
	other := testenv.Name(t)
	testenv.Eventually(t, nodeMax, func() error { // a takes ledgers again
		_, err := a.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: other, Code: "USD", Scale: 2})
		return err
	})
	_, err = admin.DrainNode(ctx(t), &ledgerv1.DrainNodeRequest{Node: "no-such-node", Drain: true})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("drain of an unknown node: %v, want NotFound", err)
	}
	_, err = admin.DrainNode(ctx(t), &ledgerv1.DrainNodeRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("drain of no node: %v, want InvalidArgument", err)
	}
}

// TestCommandsGoToTheWritersNode: a command sent to a node that does not
// write its ledger is forwarded to the node that does, and decided there
// once; a new ledger sent to a node that writes two more ledgers than
// another goes to the other.
func TestCommandsGoToTheWritersNode(t *testing.T) {
	t.Parallel()
	a := start(t)
	first, second := testenv.Name(t), testenv.Name(t)
	a.setup(t, first)
	a.setup(t, second)
	b := startNode(t, a.pgURL, a.key, "b", daemon.AllRoles)
	aID := placement(t, b, first).GetWriterNode()

	var pos uint64
	for i := range 5 {
		pos = b.transferOK(t, first, transfer(fmt.Sprintf("via-b-%d", i), "alice", "bob", "1.00", "USD"))
	}
	// Sent again: the same ids, decided once.
	for i := range 5 {
		rs := b.transfers(t, first, transfer(fmt.Sprintf("via-b-%d", i), "alice", "bob", "1.00", "USD"))
		if rs[0].GetCode() != codeExists {
			t.Fatalf("via-b-%d again: %s", i, rs[0].GetCode())
		}
	}
	if got, _ := bobCredits(t, a, first, pos); got != "5.00" {
		t.Fatalf("bob's credits: %s, want 5.00", got)
	}
	if pl := placement(t, b, first); pl.GetWriterNode() != aID {
		t.Fatalf("writer of %s: %v, want %s still", first, pl, aID)
	}
	if m := regexp.MustCompile(`(?m)^ledger_commands_forwarded_total (\d+)$`).FindStringSubmatch(metricsText(t, b)); m == nil || m[1] == "0" {
		t.Fatalf("b forwarded %v calls, want 10", m)
	}

	testenv.Eventually(t, nodeMax, func() error {
		ledger := testenv.Name(t)
		_, err := a.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
		if err != nil {
			return err
		}
		if w := placement(t, a, ledger).GetWriterNode(); w != "b" {
			return fmt.Errorf("a new ledger sent to a is written by %q, want b", w)
		}
		return nil
	})
}

// TestRunningLedgersMoveToANewNode: a node writing four ledgers, joined by
// an idle writer node, hands ledgers over one at a time until it holds no
// more than two more than the other; the commands sent all along to the
// first node are each applied once.
func TestRunningLedgersMoveToANewNode(t *testing.T) {
	t.Parallel()
	a := start(t)
	ledgers := []string{testenv.Name(t), testenv.Name(t), testenv.Name(t), testenv.Name(t)}
	for _, ledger := range ledgers {
		a.setup(t, ledger)
	}
	b := startNode(t, a.pgURL, a.key, "b", daemon.AllRoles)
	sent := map[string]int{}
	var last map[string]uint64
	testenv.Eventually(t, nodeMax, func() error {
		last = map[string]uint64{}
		for _, ledger := range ledgers {
			sent[ledger]++
			last[ledger] = ackedOnce(t, a, ledger, transfer(fmt.Sprintf("m%d", sent[ledger]), "alice", "bob", "1.00", "USD"))
		}
		onB := 0
		for _, ledger := range ledgers {
			if placement(t, b, ledger).GetWriterNode() == "b" {
				onB++
			}
		}
		if onB != 1 {
			return fmt.Errorf("%d ledgers written by b, want 1 (4 on a, 0 on b is 2 more than the margin)", onB)
		}
		return nil
	})
	for _, ledger := range ledgers {
		if got, _ := bobCredits(t, b, ledger, last[ledger]); got != fmt.Sprintf("%d.00", sent[ledger]) {
			t.Errorf("%s: bob's credits %s, want %d.00: each transfer once", ledger, got, sent[ledger])
		}
	}
}

// ackedOnce sends tr through h until it is acknowledged, again with the same
// id after Unavailable (a ledger moving between nodes), and returns its
// position.
func ackedOnce(t *testing.T, h *harness, ledger string, tr *ledgerv1.Transfer) uint64 {
	t.Helper()
	var pos uint64
	testenv.Eventually(t, nodeMax, func() error {
		resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: []*ledgerv1.Transfer{tr}})
		if status.Code(err) == codes.Unavailable {
			return err
		}
		testenv.NoError(t, err)
		r := resp.GetResults()[0]
		if r.GetCode() != codeCreated && r.GetCode() != codeExists {
			t.Fatalf("%s: %s %s", tr.GetId(), r.GetCode(), r.GetDetail())
		}
		pos = r.GetPosition()
		return nil
	})
	return pos
}

// TestPlacementsOfANewLedger: a ledger created but without events yet has a
// placement (no writer, no lag) and its projections' lags read 0 in the
// listing of every ledger: ListPlacements reads lags for the ledgers it
// lists, not through the projection status, which knows ledgers by their
// head.
func TestPlacementsOfANewLedger(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	_, err := h.adminClient(t).CreateLedger(ctx(t), &ledgerv1.CreateLedgerRequest{Ledger: ledger})
	testenv.NoError(t, err)
	if p := placement(t, h, ledger); p.GetHead() != 0 || p.GetLagPositions() != 0 {
		t.Fatalf("a new ledger's placement: %v, want head 0, lag 0", p)
	}
	busy := testenv.Name(t)
	h.setup(t, busy)
	resp, err := h.adminClient(t).ListPlacements(ctx(t), &ledgerv1.ListPlacementsRequest{})
	testenv.NoError(t, err)
	seen := 0
	for _, p := range resp.GetPlacements() {
		if p.GetLedger() == ledger || p.GetLedger() == busy {
			seen++
			if p.GetLagPositions() > p.GetHead() {
				t.Errorf("%s lags %d past its head %d", p.GetLedger(), p.GetLagPositions(), p.GetHead())
			}
		}
	}
	if seen != 2 {
		t.Fatalf("the listing of every ledger has %d of the two: %v", seen, resp.GetPlacements())
	}
	// The node's leases are in its metrics, as its heartbeat last read them.
	testenv.Eventually(t, 10*time.Second, func() error {
		want := fmt.Sprintf(`ledger_lease_age_seconds{ledger=%q,role="writer"}`, busy)
		if !strings.Contains(metricsText(t, h), want) {
			return fmt.Errorf("/metrics lacks %s", want)
		}
		return nil
	})
}
