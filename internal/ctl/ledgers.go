package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// ledgerCreateCmd creates a ledger (an admin act); one that exists is said
// so, and is no error.
func (c *client) ledgerCreateCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "create [NAME]",
		Short:   "Create a ledger (an existing one: EXISTS; no NAME: --ledger)",
		Example: "  ledgerctl ledger create payments",
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := c.ledgerArg("ledger create", args)
			if err != nil {
				return err
			}
			return c.ledgerCreate(cmd.Context(), name)
		},
	}
}

func (c *client) ledgerCreate(ctx context.Context, name string) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewAdminServiceClient(c.conn).CreateLedger(ctx, &ledgerv1.CreateLedgerRequest{Ledger: name})
		if err != nil {
			return err
		}
		if !c.human() {
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

// ledgerArchiveCmd archives a ledger: commands are refused, reads go on.
func (c *client) ledgerArchiveCmd() *cobra.Command {
	return c.ledgerVerb("archive", "Archive a ledger: read-only from now on (commands refused, reads go on)",
		func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
			return a.ArchiveLedger(ctx, &ledgerv1.ArchiveLedgerRequest{Ledger: name})
		})
}

// ledgerUnarchiveCmd makes an archived ledger active again.
func (c *client) ledgerUnarchiveCmd() *cobra.Command {
	return c.ledgerVerb("unarchive", "Make an archived ledger active again",
		func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
			return a.UnarchiveLedger(ctx, &ledgerv1.UnarchiveLedgerRequest{Ledger: name})
		})
}

// ledgerStatusCmd prints a ledger's status and head.
func (c *client) ledgerStatusCmd() *cobra.Command {
	return c.ledgerVerb("status", "A ledger's status (active, importing or archived) and head",
		func(ctx context.Context, a ledgerv1.AdminServiceClient, name string) (ledgerAnswer, error) {
			return a.GetLedger(ctx, &ledgerv1.GetLedgerRequest{Ledger: name})
		})
}

// ledgerVerb is a command on one ledger, its argument or --ledger, that
// prints the ledger the call answers with.
func (c *client) ledgerVerb(verb, short string,
	call func(context.Context, ledgerv1.AdminServiceClient, string) (ledgerAnswer, error)) *cobra.Command {
	return &cobra.Command{
		Use:     verb + " [NAME]",
		Short:   short + " (no NAME: --ledger)",
		Example: "  ledgerctl ledger " + verb + " payments",
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.ledgerCall(cmd.Context(), "ledger "+verb, args, call)
		},
	}
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
		if !c.human() {
			return c.printJSON(resp)
		}
		fmt.Fprintln(c.out, ledgerLine(resp.GetLedger()))
		return nil
	})
}

// ledgerListCmd lists every ledger.
func (c *client) ledgerListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List every ledger: status, head, created",
		Example: "  ledgerctl ledger list\n  ledgerctl ledger list -o json",
		Args:    noArgs("ledger list"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.ledgerList(cmd.Context()) },
	}
}

// ledgerList follows every page (up to pagesMax); -o json or yaml prints
// one answer holding them all.
func (c *client) ledgerList(ctx context.Context) error {
	all := &ledgerv1.ListLedgersResponse{}
	token := ""
	for range pagesMax {
		var resp *ledgerv1.ListLedgersResponse
		if err := c.call(ctx, func(ctx context.Context) error {
			var err error
			resp, err = ledgerv1.NewAdminServiceClient(c.conn).ListLedgers(ctx, &ledgerv1.ListLedgersRequest{PageToken: token})
			return err
		}); err != nil {
			return err
		}
		all.Ledgers = append(all.Ledgers, resp.GetLedgers()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	all.NextPageToken = token
	if !c.human() {
		return c.printJSON(all)
	}
	tw := tabwriterLeft(c.out)
	fmt.Fprintln(tw, "LEDGER\tSTATUS\tHEAD\tCREATED")
	for _, l := range all.GetLedgers() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.GetName(), statusWord(l.GetStatus()), l.GetHead(),
			l.GetCreatedAt().AsTime().UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// ledgerArg is the one ledger a ledger command names: its argument, else the
// global --ledger.
func (c *client) ledgerArg(cmd string, rest []string) (string, error) {
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
