package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

func (c *client) projectionsRebuildCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Rebuild a projection from the log and swap it in, while queries go on",
		Long: `rebuild rebuilds one projection of --ledger (balances, movements, transfers or
reconciliation) from the log into new rows, then swaps them in in one transaction, while
queries keep being served. Interrupted (Ctrl-C), the next run resumes it.`,
		Example:   "  ledgerctl projections rebuild balances\n  ledgerctl projections rebuild movements --ledger payments -o json",
		ValidArgs: []string{"balances", "movements", "transfers", "reconciliation"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{"projections rebuild takes one projection name"}
			}
			return c.projectionsRebuild(cmd.Context(), args[0])
		},
	}
}

// projectionsRebuild rebuilds one projection of --ledger; the progress goes
// to the progress line, the swap to the output. It has no call timeout: a
// rebuild of a long log takes as long as it takes; interrupted, the next run
// resumes it.
//
// The rate is measured here, from the positions the messages carry and
// this machine's clock: ledgerd's events_per_second counts from the first
// position it sees after its first tick, not from where the rebuild
// started, so a rebuild done within that tick (any short log) reported
// "0 events/s" and one that took longer under-counted.
func (c *client) projectionsRebuild(ctx context.Context, name string) error {
	if err := c.connect(); err != nil {
		return err
	}
	stream, err := ledgerv1.NewAdminServiceClient(c.conn).RebuildProjection(ctx,
		&ledgerv1.RebuildProjectionRequest{Ledger: c.ledger, Projection: name})
	if err != nil {
		return err
	}
	bar := c.newProgress("events", c.errOut)
	defer bar.finish()
	began := time.Now()
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !p.GetDone() {
			bar.update("rebuild "+name, p.GetPosition(), p.GetHead())
		}
		switch {
		case !c.human():
			if err := c.printJSON(p); err != nil {
				return err
			}
		case p.GetDone():
			bar.finish()
			fmt.Fprintf(c.out, "swapped in at position %d after %s\n", p.GetSwappedAtPosition(),
				time.Since(began).Round(time.Millisecond))
		}
	}
}
