package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// ledgerCreate creates a ledger (an admin act); one that exists is said so,
// and is no error.
func ledgerCreate(ctx context.Context, c *client, args []string) error {
	name, err := c.ledgerArg("ledger create", args)
	if err != nil {
		return err
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).CreateLedger(ctx, &ledgerv1.CreateLedgerRequest{Ledger: name})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		word := "CREATED"
		if !resp.GetCreated() {
			word = "EXISTS"
		}
		fmt.Fprintf(c.out, "%s %s\n", word, ledgerLine(resp.GetLedger()))
		return nil
	})
}

// ledgerArchive archives a ledger: commands are refused, reads go on.
func ledgerArchive(ctx context.Context, c *client, args []string) error {
	name, err := c.ledgerArg("ledger archive", args)
	if err != nil {
		return err
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).ArchiveLedger(ctx, &ledgerv1.ArchiveLedgerRequest{Ledger: name})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		fmt.Fprintln(c.out, ledgerLine(resp.GetLedger()))
		return nil
	})
}

// ledgerUnarchive makes an archived ledger active again.
func ledgerUnarchive(ctx context.Context, c *client, args []string) error {
	name, err := c.ledgerArg("ledger unarchive", args)
	if err != nil {
		return err
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).UnarchiveLedger(ctx, &ledgerv1.UnarchiveLedgerRequest{Ledger: name})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		fmt.Fprintln(c.out, ledgerLine(resp.GetLedger()))
		return nil
	})
}

// ledgerStatus prints a ledger's status and head.
func ledgerStatus(ctx context.Context, c *client, args []string) error {
	name, err := c.ledgerArg("ledger status", args)
	if err != nil {
		return err
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).GetLedger(ctx, &ledgerv1.GetLedgerRequest{Ledger: name})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(resp)
		}
		fmt.Fprintln(c.out, ledgerLine(resp.GetLedger()))
		return nil
	})
}

// ledgerList lists every ledger, a page at a time.
func ledgerList(ctx context.Context, c *client, args []string) error {
	rest, err := c.parse(flag.NewFlagSet("ledger list", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageError{"ledger list takes no arguments"}
	}
	tw := tabwriterLeft(c.out)
	fmt.Fprintln(tw, "LEDGER\tSTATUS\tHEAD\tCREATED")
	token := ""
	for {
		var resp *ledgerv1.ListLedgersResponse
		if err := c.call(ctx, func(ctx context.Context) error {
			resp, err = ledgerv1.NewAdminServiceClient(c.conn).ListLedgers(ctx, &ledgerv1.ListLedgersRequest{PageToken: token})
			return err
		}); err != nil {
			return err
		}
		for _, l := range resp.GetLedgers() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.GetName(), statusWord(l.GetStatus()), l.GetHead(),
				l.GetCreatedAt().AsTime().UTC().Format(time.RFC3339))
		}
		if token = resp.GetNextPageToken(); token == "" {
			return tw.Flush()
		}
	}
}

// ledgerArg is the one ledger a ledger command names: its argument, else the
// global --ledger.
func (c *client) ledgerArg(cmd string, args []string) (string, error) {
	rest, err := c.parse(flag.NewFlagSet(cmd, flag.ContinueOnError), args)
	if err != nil {
		return "", err
	}
	switch len(rest) {
	case 0:
		return c.ledger, nil
	case 1:
		return rest[0], nil
	}
	return "", usageError{cmd + " takes one ledger name"}
}

func ledgerLine(l *ledgerv1.Ledger) string {
	return fmt.Sprintf("%s  status %s  head %d", l.GetName(), statusWord(l.GetStatus()), l.GetHead())
}

func statusWord(s ledgerv1.LedgerStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "LEDGER_STATUS_"))
}
