// Command ledgerctl is a command line client of ledgerd. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/ledgerd/ledger/internal/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := ctl.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
