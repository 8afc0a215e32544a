package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// End-to-end tests of the read side's integrity: a forged message on the
// stream, and a stream ahead of the log, are refused, reported (projection
// status, /metrics, /readyz) and repaired by AdminService.RepairStream.

// integrityWait bounds the wait for a report or a repair's effect: the
// runners and the relay retry with back-off of up to 5 s.
const integrityWait = 60 * time.Second

func TestForgedMessageIsRefusedAndReported(t *testing.T) {
	t.Parallel()
	h := start(t)
	admin := h.as(t, h.key)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	h.balancesAt(t, ledger, pos, map[string]string{"bob": "10.00"})

	t.Log("a forged 1,000,000.00 transfer, chained on the head, published on the stream")
	_, headHash, err := eventstore.New(h.pool(t)).Head(ctx(t), ledger)
	testenv.NoError(t, err)
	forged := eventstore.Record{Ledger: ledger, Position: pos + 1, Type: domain.TransferCommitted{}.EventType(),
		SchemaVersion: domain.SchemaVersion, RecordedAt: time.Now().UTC(), CommandID: "forged",
		Payload: domain.AppendEvent(nil, domain.TransferCommitted{ID: "forged", EffectiveAt: time.Now().UTC(),
			Postings: []domain.Posting{{Debit: "alice", Credit: "bob", Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(100_000_000), Scale: 2}}}})}
	forged.Seal(headHash)
	js := jetStreamOf(t)
	_, err = js.PublishMsg(ctx(t), natsbus.NewFrame(natsbus.Subject(ledger), []eventstore.Record{forged}))
	testenv.NoError(t, err)

	h.waitStates(t, ledger, ledgerv1.ProjectionState_PROJECTION_STATE_CHAIN_BROKEN, fmt.Sprintf("at %d", pos+1))
	h.waitMetric(t, fmt.Sprintf(`ledger_projection_chain_broken{ledger=%q,projection="balances"} 1`, ledger))
	h.waitReady(t, "integrity: ledger "+ledger+" projection balances")

	t.Log("commands go on; the relay finds the stream's tail is not the log's and publishes nothing on top")
	pos2 := h.transferOK(t, ledger, transfer("t2", "alice", "bob", "10.00", "USD"))
	h.waitMetric(t, fmt.Sprintf(`ledger_stream_diverged{ledger=%q} 1`, ledger))
	h.waitReady(t, "integrity: ledger "+ledger+" stream:")
	bal, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}})
	testenv.NoError(t, err)
	if got := bal.GetBalances()[0].GetBalance(); got != "10.00" || bal.GetPosition() != pos {
		t.Fatalf("bob %s at %d while stopped, want 10.00 at %d: the forged event applied", got, bal.GetPosition(), pos)
	}

	repairStream(t, admin.admin, ledger)
	h.balancesAt(t, ledger, pos2, map[string]string{"bob": "20.00", "alice": "-20.00"})
	h.waitStates(t, ledger, ledgerv1.ProjectionState_PROJECTION_STATE_OK, "")
	h.waitMetric(t, fmt.Sprintf(`ledger_projection_chain_broken{ledger=%q,projection="balances"} 0`, ledger))
	h.waitMetric(t, fmt.Sprintf(`ledger_stream_diverged{ledger=%q} 0`, ledger))
	// /readyz serves a reading for a second (readyFreshFor).
	testenv.Eventually(t, integrityWait, func() error {
		if ready := h.readyz(t); strings.Contains(ready, "integrity") {
			return fmt.Errorf("/readyz after the repair: %q, want no integrity fault", ready)
		}
		return nil
	})
	pos3 := h.transferOK(t, ledger, transfer("t3", "alice", "bob", "1.00", "USD"))
	h.balancesAt(t, ledger, pos3, map[string]string{"bob": "21.00"})
}

func TestStreamAheadOfTheLogIsDetectedAndRepaired(t *testing.T) {
	t.Parallel()
	pgURL, natsURL := testenv.MigratedPostgresURL(t), testenv.NATSURL(t)
	ledger := testenv.Name(t)

	h := startOn(t, pgURL, natsURL)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "10.00", "USD"))
	h.balancesAt(t, ledger, pos, map[string]string{"bob": "10.00"})
	h.m.Close()

	t.Log("a copy of the database: the backup")
	backupURL := copyDatabase(t, pgURL)

	h = startOn(t, pgURL, natsURL)
	var ahead uint64
	for i := range 5 {
		ahead = h.transferOK(t, ledger, transfer(fmt.Sprintf("lost-%d", i), "alice", "bob", "100.00", "USD"))
	}
	h.balancesAt(t, ledger, ahead, map[string]string{"bob": "510.00"})
	h.m.Close()

	t.Log("restored from the backup, on the same NATS: the stream is ahead of the log")
	h = startOn(t, backupURL, natsURL)
	admin := h.as(t, h.key)
	after := h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	if after >= ahead {
		t.Fatalf("restored log's head %d, want before the stream's %d", after, ahead)
	}
	h.waitMetric(t, fmt.Sprintf(`ledger_stream_diverged{ledger=%q} 1`, ledger))
	h.waitStates(t, ledger, ledgerv1.ProjectionState_PROJECTION_STATE_UNSPECIFIED, "")
	h.waitReady(t, "integrity: ledger "+ledger+" stream: ")
	bal, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}})
	testenv.NoError(t, err)
	if got := bal.GetBalances()[0].GetBalance(); got != "10.00" && got != "11.00" {
		t.Fatalf("bob %s while the stream is ahead: events not in the log applied", got)
	}

	repairStream(t, admin.admin, ledger)
	h.balancesAt(t, ledger, after, map[string]string{"bob": "11.00", "alice": "-11.00"})
	h.waitStates(t, ledger, ledgerv1.ProjectionState_PROJECTION_STATE_OK, "")
	h.waitMetric(t, fmt.Sprintf(`ledger_stream_diverged{ledger=%q} 0`, ledger))
	tb, err := h.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: ledger, MinPosition: after})
	testenv.NoError(t, err)
	for _, l := range tb.GetLines() {
		if l.GetAsset() == "USD" && (l.GetDebitsPosted() != "11.00" || l.GetCreditsPosted() != "11.00") {
			t.Errorf("trial balance of USD %s/%s, want the log's 11.00/11.00", l.GetDebitsPosted(), l.GetCreditsPosted())
		}
	}
	// The stream is the log's again: what comes next flows.
	next := h.transferOK(t, ledger, transfer("t3", "alice", "bob", "1.00", "USD"))
	h.balancesAt(t, ledger, next, map[string]string{"bob": "12.00"})
}

// startOn runs ledgerd on the given database and NATS, stopped at the end of
// the test (Close may come before).
func startOn(t *testing.T, pgURL, natsURL string) *harness {
	t.Helper()
	h := &harness{pgURL: pgURL, key: newKey(t)}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: pgURL, NATSURL: natsURL, GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: h.key},
		Logger: slog.New(slog.NewTextHandler(failLog(t), nil)),
	}
	testenv.NoError(t, h.m.Run(context.Background()))
	t.Cleanup(h.m.Close)
	c := h.as(t, h.key)
	h.cmd, h.query = c.cmd, c.query
	return h
}

// copyDatabase copies the database of pgURL (nobody may be connected to it)
// into a new one, dropped at the end of the test, and returns its URL.
func copyDatabase(t *testing.T, pgURL string) string {
	t.Helper()
	u, err := url.Parse(pgURL)
	testenv.NoError(t, err)
	src := strings.TrimPrefix(u.Path, "/")
	dst := src + "_copy"
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx(t), u.String())
	testenv.NoError(t, err)
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{dst}.Sanitize()+` WITH (FORCE)`)
		conn.Close(context.Background())
	})
	// The closed ledgerd's sessions may take a moment to end.
	testenv.Eventually(t, integrityWait, func() error {
		_, err := conn.Exec(ctx(t), `CREATE DATABASE `+pgx.Identifier{dst}.Sanitize()+` TEMPLATE `+pgx.Identifier{src}.Sanitize())
		return err
	})
	u.Path = "/" + dst
	return u.String()
}

// jetStreamOf connects to the tests' NATS as anyone who reaches it could.
func jetStreamOf(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return js
}

// pool opens a pool on the harness's database, closed at the end of the test.
func (h *harness) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// balancesAt waits for the balances to reflect pos and requires want's
// accounts to hold want's balances.
func (h *harness) balancesAt(t *testing.T, ledger string, pos uint64, want map[string]string) {
	t.Helper()
	accounts := make([]string, 0, len(want))
	for a := range want {
		accounts = append(accounts, a)
	}
	// One min_position wait is ledgerd's (10 s); after a repair the
	// runners may still be in a back-off of up to 5 s, on a loaded box
	// longer: the position is waited for up to integrityWait.
	var bal *ledgerv1.GetBalancesResponse
	testenv.Eventually(t, integrityWait, func() (err error) {
		bal, err = h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: accounts, MinPosition: pos})
		if status.Code(err) != codes.DeadlineExceeded && err != nil {
			t.Fatalf("GetBalances at %d: %v", pos, err)
		}
		return err
	})
	for _, b := range bal.GetBalances() {
		if b.GetBalance() != want[b.GetAccount()] {
			t.Errorf("%s at %d: %s, want %s", b.GetAccount(), bal.GetPosition(), b.GetBalance(), want[b.GetAccount()])
		}
	}
}

// waitStates waits until every projection of ledger is in state (any state
// but OK, for UNSPECIFIED) with a reason holding reason.
func (h *harness) waitStates(t *testing.T, ledger string, state ledgerv1.ProjectionState, reason string) {
	t.Helper()
	testenv.Eventually(t, integrityWait, func() error {
		st, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		if len(st.GetProjections()) == 0 {
			return errors.New("no projections")
		}
		for _, p := range st.GetProjections() {
			ok := p.GetState() == state || state == ledgerv1.ProjectionState_PROJECTION_STATE_UNSPECIFIED &&
				p.GetState() != ledgerv1.ProjectionState_PROJECTION_STATE_OK
			if !ok || !strings.Contains(p.GetReason(), reason) {
				return fmt.Errorf("%s: %s %q, want %s %q", p.GetName(), p.GetState(), p.GetReason(), state, reason)
			}
		}
		return nil
	})
}

// waitMetric waits until /metrics holds line.
func (h *harness) waitMetric(t *testing.T, line string) {
	t.Helper()
	testenv.Eventually(t, integrityWait, func() error {
		if m := httpGet(t, "http://"+h.m.HTTPAddr()+"/metrics"); !strings.Contains(m, line+"\n") {
			return fmt.Errorf("no %s on /metrics", line)
		}
		return nil
	})
}

// readyz is /readyz as an admin sees it.
func (h *harness) readyz(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/readyz", nil)
	testenv.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testenv.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// waitReady waits until /readyz, asked with an admin key, holds detail.
func (h *harness) waitReady(t *testing.T, detail string) {
	t.Helper()
	testenv.Eventually(t, integrityWait, func() error {
		if r := h.readyz(t); !strings.Contains(r, detail) {
			return fmt.Errorf("/readyz %q, want %q in it", r, detail)
		}
		return nil
	})
}

// repairStream runs AdminService.RepairStream to its end.
func repairStream(t *testing.T, admin ledgerv1.AdminServiceClient, ledger string) {
	t.Helper()
	stream, err := admin.RepairStream(ctx(t), &ledgerv1.RepairStreamRequest{Ledger: ledger})
	testenv.NoError(t, err)
	rebuilt := map[string]bool{}
	var last *ledgerv1.RepairStreamResponse
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		testenv.NoError(t, err)
		if p.GetProjectionDone() {
			rebuilt[p.GetProjection()] = true
		}
		last = p
	}
	if want := len(projections.All()); !last.GetDone() || len(rebuilt) != want {
		t.Fatalf("repair ended with %v having rebuilt %v, want done and %d projections rebuilt", last, rebuilt, want)
	}
}

// failLog is a log that t prints only if it fails.
func failLog(t *testing.T) io.Writer {
	w := &testenv.LockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ledgerd's log:\n%s", w.String())
		}
	})
	return w
}
