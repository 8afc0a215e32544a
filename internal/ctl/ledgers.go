package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"google.golang.org/protobuf/proto"
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
	return c.ledgerCall(ctx, "ledger archive", args, func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
		return a.ArchiveLedger(ctx, &ledgerv1.ArchiveLedgerRequest{Ledger: name})
	})
}

// ledgerUnarchive makes an archived ledger active again.
func ledgerUnarchive(ctx context.Context, c *client, args []string) error {
	return c.ledgerCall(ctx, "ledger unarchive", args, func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
		return a.UnarchiveLedger(ctx, &ledgerv1.UnarchiveLedgerRequest{Ledger: name})
	})
}

// ledgerStatus prints a ledger's status and head.
func ledgerStatus(ctx context.Context, c *client, args []string) error {
	return c.ledgerCall(ctx, "ledger status", args, func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
		return a.GetLedger(ctx, &ledgerv1.GetLedgerRequest{Ledger: name})
	})
}

// ledgerAnswer is an AdminService answer about one ledger.
type ledgerAnswer interface {
	proto.Message
	GetLedger() *ledgerv1.Ledger
}

// ledgerCall runs the verb's call on the ledger its args name and prints the
// ledger it answers with.
func (c *client) ledgerCall(ctx context.Context, verb string, args []string,
	call func(context.Context, ledgerv1.AdminServiceClient, string) (ledgerAnswer, error)) error {
	name, err := c.ledgerArg(verb, args)
	if err != nil {
		return err
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := call(ctx, ledgerv1.NewAdminServiceClient(c.conn), name)
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
