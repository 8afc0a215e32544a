package daemon_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/internal/bench"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestBenchWebhookStall runs ledgerbench's -webhook-stall against ledgerd
// (webhook timings a test can wait out): its receiver refuses for 2 s from
// the start of a 5 s load, then every covered transfer is delivered once, in
// order, and the report has the write rates around the stall.
func TestBenchWebhookStall(t *testing.T) {
	t.Parallel()
	// fastWebhooks' timings, but attempts that may take 5 s: an answer
	// slower than the attempt's timeout (the race detector on a loaded box
	// can make a 204 that slow) is retried, rightly, and a receiver then
	// sees the delivery id twice, which the bench's check counts as a
	// duplicate. (The held half of the stall ends at the stall's end, well
	// within 5 s.)
	h := startWith(t, func(m *daemon.Main) {
		m.Config.Webhooks = webhooks.Options{MaxAge: time.Hour, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			AttemptTimeout: 5 * time.Second, BreakerFailures: 3, BreakerCooldown: 300 * time.Millisecond, Poll: 100 * time.Millisecond}
	})
	// 20 accounts: acc-0 is in about one transfer in ten, so that the stall
	// sees covered transfers even at the few dozen a second of a loaded CI
	// box (with 100, one in fifty: none in the stall, now and then).
	args := []string{"-addr", h.m.GRPCAddr(), "-api-key", h.key, "-ledger", testenv.Name(t), "-accounts", "20",
		"-concurrency", "4", "-duration", "5s", "-lag-every", "0", "-webhook-stall", "2s", "-webhook-accounts", "acc-0",
		"-webhook-wait", "60s"}
	cfg, err := bench.ParseFlags(args, func(string) string { return "" }, time.Now(), io.Discard)
	testenv.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := bench.Run(ctx, cfg, io.Discard)
	testenv.NoError(t, err)
	for _, c := range r.Checks {
		if !c.Pass {
			t.Errorf("FAIL %s: %s", c.Name, c.Detail)
			if r.Webhook != nil {
				t.Errorf("samples %q, late %d", r.Webhook.Deliveries.Samples, r.Webhook.Late)
			}
		}
	}
	w := r.Webhook
	if w == nil {
		t.Fatal("no webhook report")
	}
	if w.Deliveries.Delivered == 0 || w.Deliveries.Delivered != w.Deliveries.Expected {
		t.Errorf("webhook report %+v: want every covered transfer delivered", w)
	}
	t.Logf("webhook: %d refused, %d held, %d late, %d delivered, drain %.1f s, ratio %.2f", w.Refused, w.Hung, w.Late, w.Deliveries.Delivered, w.DrainSeconds, w.RatioStallToAfter)
	if len(w.Windows) < 2 || w.RatioStallToAfter <= 0 {
		t.Errorf("windows %+v, ratio %v: want during and after the stall", w.Windows, w.RatioStallToAfter)
	}
	// What the test is for, a refused delivery retried and then delivered
	// once and in order, needs a request in the stall; under -race on a
	// loaded box the deliveries have lagged the writes by more than its 2 s.
	// Skipped then, so that it shows (the checks above still fail the test).
	if !w.AttemptedInStall {
		t.Skipf("no delivery was attempted in the %.0f s stall: the refusals were not exercised", w.StallSeconds)
	}
	if w.Refused+w.Hung == 0 {
		t.Errorf("webhook report %+v: a request came in the stall, and none was refused or held", w)
	}
}
