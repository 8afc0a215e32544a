package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/ctl"
	"github.com/ledgerd/ledger/internal/testenv"
)

// takeoverMax bounds how long a ledger goes unserved once its writer's
// process is killed: the standby sees the lease free as soon as PostgreSQL
// ends the dead session, then waits its grace (2 s) before serving.
const takeoverMax = 15 * time.Second

// TestFailover runs two ledgerd processes on one database and NATS server,
// kills (-9) the one holding the ledger's lease under load, and checks that
// the other takes over within takeoverMax and that every acknowledged
// transfer is in the log exactly once, on gapless positions, with balances
// that sum to zero.
func TestFailover(t *testing.T) {
	t.Parallel()
	bin := buildLedgerd(t)
	first := newNode(t, bin)
	second := *first // same database and NATS; its own data directory and log
	second.dataDir = t.TempDir()
	second.logPath = filepath.Join(second.dataDir, "ledgerd.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("second ledgerd's logs are in %s", second.logPath)
		}
	})
	var (
		procs [2]*process
		hs    [2]*harness
		addrs [2]string
	)
	for i, n := range []*node{first, &second} {
		procs[i], hs[i] = n.start(t)
		addrs[i] = grpcAddrOf(t, procs[i])
	}
	ledger := testenv.Name(t)

	// Set up through whichever process writes the ledger.
	onWriter(t, hs, func(h *harness) error {
		resp, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
		if err == nil && resp.GetResult().GetCode() != codeCreated && resp.GetResult().GetCode() != codeExists {
			t.Fatalf("define USD: %s %s", resp.GetResult().GetCode(), resp.GetResult().GetDetail())
		}
		return err
	})
	const clients = 8
	accounts := []string{"src"}
	opens := []*ledgerv1.Account{usdAccount("src", nil, nil)}
	for i := range clients {
		accounts = append(accounts, fmt.Sprintf("dst:%d", i))
		opens = append(opens, usdAccount(accounts[i+1], nil, nil))
	}
	onWriter(t, hs, func(h *harness) error {
		resp, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: opens})
		for _, r := range resp.GetResults() {
			if r.GetCode() != codeCreated && r.GetCode() != codeExists {
				t.Fatalf("open %s: %s %s", r.GetId(), r.GetCode(), r.GetDetail())
			}
		}
		return err
	})

	// The load: each client sends one transfer at a time, retrying the same
	// id on the other process while it gets Unavailable or DeadlineExceeded.
	l := &failoverLoad{acked: map[string]failoverAck{}}
	to := loadTarget{ledger: ledger, cmd: func(via int) ledgerv1.CommandServiceClient { return hs[via].cmd },
		callTimeout: 5 * time.Second, retry: []codes.Code{codes.Unavailable, codes.DeadlineExceeded}}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(loadCtx, to, g, accounts[1+g])
		}()
	}
	waitAcks := func(what string, n int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if err := l.failure(); err != nil {
				t.Fatalf("load: %v", err)
			}
			if got := l.count(); got < n {
				return fmt.Errorf("%s: %d transfers acknowledged, want %d", what, got, n)
			}
			return nil
		})
	}
	waitAcks("before the kill", 200)

	// The writer is the process holding the ledger's writer lease (either
	// process takes commands: the other forwards them).
	var leader int
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		leader, err = writerIndex(t, hs[0].key, ledger, addrs[:])
		return err
	})
	standby := 1 - leader
	before := l.count()
	killedAt := time.Now()
	procs[leader].kill(t)
	t.Logf("killed the writer, process %d, with %d transfers acknowledged", leader, before)

	// The standby serves within takeoverMax: the first CREATED through it
	// after the kill (before it, it forwarded to the writer).
	var takeover time.Duration
	testenv.Eventually(t, takeoverMax+10*time.Second, func() error {
		if err := l.failure(); err != nil {
			t.Fatalf("load: %v", err)
		}
		at, ok := l.firstAckAfter(killedAt, standby)
		if !ok {
			return fmt.Errorf("no transfer acknowledged through the standby, process %d, since the kill", standby)
		}
		takeover = at.Sub(killedAt)
		return nil
	})
	t.Logf("the standby served its first transfer %s after the kill", takeover)
	if takeover > takeoverMax {
		t.Errorf("takeover took %s, want under %s", takeover, takeoverMax)
	}
	waitAcks("after the takeover", l.count()+200)
	stopLoad()
	wg.Wait()
	if err := l.failure(); err != nil {
		t.Fatalf("load: %v", err)
	}
	acked := l.snapshot()
	byCode := map[ledgerv1.ResultCode]int{}
	for _, a := range acked {
		byCode[a.code]++
	}
	t.Logf("%d transfers acknowledged (%d CREATED, %d EXISTS), %d after the kill",
		len(acked), byCode[codeCreated], byCode[codeExists], len(acked)-before)

	h := hs[standby]
	if dup := h.duplicateCommands(t, ledger); len(dup) != 0 {
		t.Errorf("transfers committed more than once: %v", dup)
	}
	committed := h.committedTransfers(t, ledger)
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

	head := h.head(t, ledger)
	checkGapless(t, h, ledger, head)

	// The balances as of the position they reflect (head or later), held to
	// the transfers the log holds up to that position: a call whose client
	// gave up may still be committed by the writer after the load stopped,
	// after committed and head were read.
	resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts, MinPosition: head})
	testenv.NoError(t, err)
	bals := map[string]*ledgerv1.Balance{}
	for _, b := range resp.GetBalances() {
		bals[b.GetAccount()] = b
	}
	at, inBalances := resp.GetPosition(), 0
	for _, pos := range h.committedTransfers(t, ledger) {
		if pos <= at {
			inBalances++
		}
	}
	if inBalances != len(committed) {
		t.Logf("%d transfers committed after the load stopped (balances at %d)", inBalances-len(committed), at)
	}
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
	if want := int64(inBalances) * 100; sum != 0 || credits != want || cents(t, bals["src"].GetDebitsPosted()) != want {
		t.Errorf("balances at %d sum to %d cents, destinations credited %d cents, src debited %s; want 0, %d, %d cents (%d transfers committed up to %d, %d when the load stopped)",
			at, sum, credits, bals["src"].GetDebitsPosted(), want, want, inBalances, at, len(committed))
	}

	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	env := map[string]string{"LEDGER_ADDR": addrs[standby], "LEDGER_LEDGER": ledger, "LEDGER_API_KEY": hs[standby].key}
	if code := ctl.Run(c, []string{"audit", "verify"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Errorf("ledgerctl audit verify through the survivor: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}

// grpcAddrOf is the -grpc-addr a ledgerd process was started with.
func grpcAddrOf(t *testing.T, p *process) string {
	t.Helper()
	args := p.cmd.Args
	for i, a := range args[:len(args)-1] {
		if a == "-grpc-addr" {
			return args[i+1]
		}
	}
	t.Fatalf("no -grpc-addr in %q", args)
	return ""
}

// writerIndex is which of the ledgerd processes listening on addrs holds
// ledger's writer lease, as the registry says (asked of any that answers,
// with the admin key key).
func writerIndex(t *testing.T, key, ledger string, addrs []string) (int, error) {
	t.Helper()
	var errs []error
	for _, addr := range addrs {
		conn, err := grpc.NewClient(addr, grpc.WithPerRPCCredentials(apikeys.Bearer(key)), grpc.WithTransportCredentials(insecure.NewCredentials()))
		testenv.NoError(t, err)
		defer conn.Close()
		admin := ledgerv1.NewAdminServiceClient(conn)
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pl, err := admin.ListPlacements(c, &ledgerv1.ListPlacementsRequest{Ledger: ledger})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		nodes, err := admin.ListNodes(c, &ledgerv1.ListNodesRequest{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		writer := pl.GetPlacements()[0].GetWriterNode()
		for _, n := range nodes.GetNodes() {
			if i := slices.Index(addrs, n.GetGrpcAddr()); n.GetId() == writer && i >= 0 {
				return i, nil
			}
		}
		return 0, fmt.Errorf("no process writes %s (writer %q)", ledger, writer)
	}
	return 0, errors.Join(errs...)
}

// onWriter runs call through whichever process answers it without
// Unavailable: the one writing the ledger.
func onWriter(t *testing.T, hs [2]*harness, call func(*harness) error) {
	t.Helper()
	i := 0
	testenv.Eventually(t, 10*time.Second, func() error {
		h := hs[i%2]
		i++
		err := call(h)
		if status.Code(err) == codes.Unavailable {
			return err
		}
		testenv.NoError(t, err)
		return nil
	})
}

// eventPositions counts the ledger's events and returns their lowest
// position.
func eventPositions(t *testing.T, h *harness, ledger string) (n, lowest, highest uint64) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var count, lo, hi int64
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(*), COALESCE(min(position), 0), COALESCE(max(position), 0)
		FROM events WHERE ledger = $1`, ledger).Scan(&count, &lo, &hi))
	return uint64(count), uint64(lo), uint64(hi)
}

// checkGapless fails t unless the ledger's log holds every position from 1
// to its last, which is at least head (read before: a call whose client
// gave up may still be committed after it, and was: "455 events at
// positions 1..449" counted six events appended after the head was read).
func checkGapless(t *testing.T, h *harness, ledger string, head uint64) {
	t.Helper()
	if n, lo, hi := eventPositions(t, h, ledger); n != hi-lo+1 && n != 0 || n > 0 && lo != 1 || hi < head {
		t.Errorf("%s: %d events at positions %d..%d (head %d read before): not gapless", ledger, n, lo, hi, head)
	}
}
