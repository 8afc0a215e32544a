// Command ledgerctl is a command line client of ledgerd. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"

	"github.com/ledgerd/ledger/internal/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	// LEDGERCTL_CPUPROFILE writes a CPU profile of the command to that file:
	// how the client's share of a replay or a verify was measured
	// (docs/perf.md).
	stopProfile := startProfile(os.Getenv("LEDGERCTL_CPUPROFILE"))
	code := ctl.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerctl: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "ledgerctl: cpu profile:", err)
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
