package daemon_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// replicaFallbackAfter is the test's -replica-fallback-after: long enough
// that a replica replaying normally under the race detector on two cores is
// never fallen back from, short enough to wait for once.
const replicaFallbackAfter = 5 * time.Second

// fallbacks reads ledger_replica_fallbacks_total from h's /metrics.
func fallbacks(t *testing.T, h *harness) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ledger_replica_fallbacks_total (\d+)$`).FindStringSubmatch(metricsText(t, h))
	if m == nil {
		t.Fatal("/metrics lacks ledger_replica_fallbacks_total")
	}
	n, err := strconv.Atoi(m[1])
	testenv.NoError(t, err)
	return n
}

// bobCredits is bob's posted credits and the position they reflect, as h's
// queries answer with minPosition.
func bobCredits(t *testing.T, h *harness, ledger string, minPosition uint64) (string, uint64) {
	t.Helper()
	resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: minPosition})
	testenv.NoError(t, err)
	return resp.GetBalances()[0].GetCreditsPosted(), resp.GetPosition()
}

// TestQueriesOnAReplica runs ledgerd on a private primary with its queries
// on a streaming replica of it: a query with the command's position as
// min_position reads the replica once it has replayed that far; with the
// replica's replay paused it reads the primary after the fallback bound
// (read-your-writes holds), while a query without min_position reads the
// replica as it stands; with the replica stopped, every query reads the
// primary.
func TestQueriesOnAReplica(t *testing.T) {
	t.Parallel()
	primary, replica := testenv.ReplicatedPostgres(t)
	testenv.NoError(t, daemon.Migrate(ctx(t), daemon.Config{PostgresURL: primary.URL()}, discardLogger(), nil))
	h := startWith(t, func(m *daemon.Main) {
		m.Config.PostgresURL, m.Config.PostgresReplicaURL = primary.URL(), replica.URL()
		m.Config.ReplicaFallbackAfter = replicaFallbackAfter
	})
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	pos := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD"))
	if got, at := bobCredits(t, h, ledger, pos); got != "1.00" || at < pos {
		t.Fatalf("bob's credits at %d: %s at %d, want 1.00", pos, got, at)
	}
	if n := fallbacks(t, h); n != 0 {
		t.Fatalf("%d calls read the primary with the replica replaying, want 0", n)
	}

	conn, err := pgx.Connect(ctx(t), replica.URL())
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx(t), `SELECT pg_wal_replay_pause()`)
	testenv.NoError(t, err)
	paused := pos
	pos = h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	if got, at := bobCredits(t, h, ledger, 0); got != "1.00" || at >= pos || at < paused {
		t.Fatalf("bob's credits on the paused replica: %s at %d, want 1.00 at %d..%d", got, at, paused, pos-1)
	}
	began := time.Now()
	if got, at := bobCredits(t, h, ledger, pos); got != "2.00" || at < pos {
		t.Fatalf("bob's credits at %d with the replica paused: %s at %d, want 2.00", pos, got, at)
	}
	if took := time.Since(began); took < replicaFallbackAfter {
		t.Fatalf("answered in %s with the replica paused before %d: it cannot have waited the fallback bound", took, pos)
	}
	if n := fallbacks(t, h); n != 1 {
		t.Fatalf("%d calls read the primary, want 1", n)
	}
	// A statement page (one statement on positions) reads the paused
	// replica too; with a min_position the replica has not reached, the
	// primary after the bound.
	st, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob"})
	testenv.NoError(t, err)
	if n := len(st.GetLines()); n != 1 || st.GetPosition() >= pos || st.GetClosingBalance() != "1.00" {
		t.Fatalf("bob's statement on the paused replica: %d lines, closing %s at %d; want 1, 1.00 before %d",
			n, st.GetClosingBalance(), st.GetPosition(), pos)
	}
	st, err = h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", MinPosition: pos})
	testenv.NoError(t, err)
	if n := len(st.GetLines()); n != 2 || st.GetPosition() < pos || st.GetClosingBalance() != "2.00" {
		t.Fatalf("bob's statement at %d with the replica paused: %d lines, closing %s at %d; want 2, 2.00",
			pos, n, st.GetClosingBalance(), st.GetPosition())
	}
	if n := fallbacks(t, h); n != 2 {
		t.Fatalf("%d calls read the primary, want 2", n)
	}
	_, err = conn.Exec(ctx(t), `SELECT pg_wal_replay_resume()`)
	testenv.NoError(t, err)
	conn.Close(context.Background())

	testenv.NoError(t, replica.Stop(ctx(t)))
	pos = h.transferOK(t, ledger, transfer("t3", "alice", "bob", "1.00", "USD"))
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}})
		if err != nil {
			return err
		}
		if got := resp.GetBalances()[0].GetCreditsPosted(); got != "3.00" {
			return fmt.Errorf("bob's credits with the replica down: %s, want 3.00", got)
		}
		return nil
	})
	if got, at := bobCredits(t, h, ledger, pos); got != "3.00" || at < pos {
		t.Fatalf("bob's credits at %d with the replica down: %s at %d", pos, got, at)
	}
	// Every call read the primary meanwhile, and counts.
	before := fallbacks(t, h)
	_, err = h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}})
	testenv.NoError(t, err)
	if n := fallbacks(t, h); n != before+1 {
		t.Fatalf("a call with the replica down: %d fallbacks after %d, want one more", n, before)
	}
}
