package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// projectionsRebuild rebuilds one projection of --ledger and prints its
// progress, one line per message. It has no call timeout: a rebuild of a long
// log takes as long as it takes; interrupted, the next run resumes it.
func projectionsRebuild(ctx context.Context, c *client, args []string) error {
	rest, err := c.parse(flag.NewFlagSet("projections rebuild", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"projections rebuild takes one projection name"}
	}
	if c.output != "table" && c.output != "json" {
		return usageError{"-o is table or json"}
	}
	if err := c.connect(); err != nil {
		return err
	}
	stream, err := ledgerv1.NewAdminServiceClient(c.conn).RebuildProjection(ctx,
		&ledgerv1.RebuildProjectionRequest{Ledger: c.ledger, Projection: rest[0]})
	if err != nil {
		return err
	}
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case c.output == "json":
			if err := c.printJSON(p); err != nil {
				return err
			}
		case p.GetDone():
			fmt.Fprintf(c.out, "swapped in at position %d\n", p.GetSwappedAtPosition())
		default:
			fmt.Fprintf(c.out, "position %d/%d  %.0f events/s  eta %.1fs\n",
				p.GetPosition(), p.GetHead(), p.GetEventsPerSecond(), p.GetEtaSeconds())
		}
	}
}
