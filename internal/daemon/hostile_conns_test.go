package daemon_test

import (
	"context"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
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
