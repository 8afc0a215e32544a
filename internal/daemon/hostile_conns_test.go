package daemon_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestOneKeyCannotTakeEveryConnection: a reader key, scoped to one ledger,
// that opened as many connections as the cap and made a call on each does
// not keep an admin's new connection out: past its share of the cap (a
// quarter), its newest connection makes room.
func TestOneKeyCannotTakeEveryConnection(t *testing.T) {
	t.Parallel()
	const connsMax = 16
	h := startWith(t, func(m *daemon.Main) { m.Config.ConnsMax = connsMax })
	reader, _ := h.as(t, h.key).newKey(t, []string{"x"}, "reader")
	for range connsMax {
		c := h.as(t, reader)
		_, _ = c.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: "x"})
	}
	admin := h.as(t, h.key)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.query.GetProjectionStatus(cctx, &ledgerv1.GetProjectionStatusRequest{}); err != nil {
		t.Errorf("one reader key holding %d connections keeps an admin's new connection out: %v", connsMax, err)
	}
}

// TestRevokedKeyConnectionsLoseTheirPlace: a connection that authenticated
// keeps its place over newcomers at the cap; once its key is revoked and a
// call on it is refused for it, it no longer does, so a key's revoked
// holder cannot keep connections from the keys still valid.
func TestRevokedKeyConnectionsLoseTheirPlace(t *testing.T) {
	t.Parallel()
	const connsMax = 8 // a share of 2 a key
	h := startWith(t, func(m *daemon.Main) { m.Config.ConnsMax = connsMax })
	admin := h.as(t, h.key)
	var readers []*caller
	var revoked string
	for i := range connsMax - 1 { // each within its share; with admin's, the cap
		text, id := admin.newKey(t, []string{"x"}, "reader")
		if i == 0 {
			revoked = id
		}
		c := h.as(t, text)
		// Ledger x does not exist: the call is authenticated, then refused.
		if _, err := c.query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: "x"}); err != nil &&
			status.Code(err) != codes.InvalidArgument {
			t.Fatalf("reader %d: %v", i, err)
		}
		readers = append(readers, c)
	}
	_, err := admin.admin.RevokeApiKey(ctx(t), &ledgerv1.RevokeApiKeyRequest{Id: revoked})
	testenv.NoError(t, err)
	if _, err := readers[0].query.GetTrialBalance(ctx(t), &ledgerv1.GetTrialBalanceRequest{Ledger: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call with the revoked key: %v, want Unauthenticated", err)
	}
	newcomer := h.as(t, h.key)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := newcomer.query.GetProjectionStatus(cctx, &ledgerv1.GetProjectionStatusRequest{}); err != nil {
		t.Errorf("a revoked key's connection keeps an admin's new connection out at the cap: %v", err)
	}
}
