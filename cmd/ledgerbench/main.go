// Command ledgerbench drives a running ledgerd with transfers, reports
// throughput and latency (and, with -readers, that of queries sent while it
// writes, with the projections' lag), and verifies every acknowledged
// transfer. It exits 0 when every check passes, 1 when one fails or the run
// breaks, 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ledgerd/ledger/internal/bench"
)

func main() {
	cfg, err := bench.ParseFlags(os.Args[1:], os.Getenv, time.Now(), os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerbench:", err)
		os.Exit(2)
	}
	cfg.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	report, err := bench.Run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerbench:", err)
		os.Exit(1)
	}
	if !report.Pass {
		os.Exit(1)
	}
}
