package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

// benchEvents is how many transfers BenchmarkRun reads each iteration.
const benchEvents = 4000

// errBenchDone ends a run at the head.
var errBenchDone = errors.New("at the head")

// BenchmarkRun reads a ledger of benchEvents transfers from the start with
// Run, with and without Config.Audit (which confirms each batch against the
// log: one ReadEvents of one event a batch), in batches of the default
// (256) and of 16: the cost of confirming is per batch.
func BenchmarkRun(b *testing.B) {
	l := ledgerdtest.Start(b)
	ledger := testenv.Name(b)
	l.Setup(b, ledger, 4)
	var head uint64
	for i := 0; i < benchEvents; i += 500 {
		ts := make([]*ledgerv1.Transfer, 0, 500)
		for j := range 500 {
			id := i + j
			ts = append(ts, ledgerdtest.Transfer(fmt.Sprintf("b-%d", id), ledgerdtest.UserAccount(1+id%4), ledgerdtest.UserAccount(1+(id+1)%4), "1.00"))
		}
		head = l.Transfers(b, ledger, ts...)
	}
	nc, err := consumer.NATSOptions{URL: l.NATSURL}.Connect()
	testenv.NoError(b, err)
	b.Cleanup(nc.Close)
	for _, audit := range []bool{false, true} {
		for _, batch := range []int{consumer.BatchMaxDefault, 16} {
			b.Run(fmt.Sprintf("audit=%v/batch=%d", audit, batch), func(b *testing.B) {
				cfg := consumer.Config{Ledger: ledger, NATS: nc, BatchMax: batch}
				if audit {
					cfg.Audit = l.Audit
				}
				c, err := consumer.New(cfg)
				testenv.NoError(b, err)
				b.ReportAllocs()
				for b.Loop() {
					err := c.Run(context.Background(), consumer.Checkpoint{}, func(_ context.Context, ev consumer.Event) error {
						if ev.Position == head {
							return errBenchDone
						}
						return nil
					})
					if !errors.Is(err, errBenchDone) {
						b.Fatalf("run: %v", err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(head), "ns/event")
			})
		}
	}
}
