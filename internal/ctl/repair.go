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

func (c *client) adminRepairStreamCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "repair-stream",
		Short: "Recreate --ledger's stream from the log and rebuild its projections",
		Long: `repair-stream deletes --ledger's NATS stream and creates it empty (ledgerd publishes
the log into it again), then rebuilds each projection of the ledger from the log and swaps it
in, while queries go on. Run it when "projections status" shows CHAIN_BROKEN or
STREAM_DIVERGED: a message on the stream that is not the log's (forged), or a stream ahead of
the log (PostgreSQL restored from an earlier copy). See docs/operations.md, "Integrity".`,
		Example: "  ledgerctl admin repair-stream --ledger payments",
		Args:    noArgs("admin repair-stream"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.adminRepairStream(cmd.Context()) },
	}
}

// adminRepairStream repairs --ledger's stream; the progress goes to the
// progress line, the end to the output. It has no call timeout: the
// rebuilds of a long log take as long as they take.
func (c *client) adminRepairStream(ctx context.Context) error {
	if err := c.connect(); err != nil {
		return err
	}
	stream, err := ledgerv1.NewAdminServiceClient(c.conn).RepairStream(ctx, &ledgerv1.RepairStreamRequest{Ledger: c.ledger})
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
		if p.GetProjection() != "" && !p.GetProjectionDone() {
			bar.update("rebuild "+p.GetProjection(), p.GetPosition(), p.GetHead())
		}
		switch {
		case !c.human():
			if err := c.printJSON(p); err != nil {
				return err
			}
		case p.GetProjection() == "" && !p.GetDone():
			fmt.Fprintf(c.out, "stream of %s recreated; ledgerd publishes the log into it again (head %d)\n", c.ledger, p.GetHead())
		case p.GetProjectionDone():
			bar.finish()
			fmt.Fprintf(c.out, "%s rebuilt from the log, swapped in at position %d\n", p.GetProjection(), p.GetPosition())
		case p.GetDone():
			fmt.Fprintf(c.out, "repaired in %s\n", time.Since(began).Round(time.Millisecond))
		}
	}
}
