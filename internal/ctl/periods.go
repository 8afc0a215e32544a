package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

func (c *client) periodCloseCmd() *cobra.Command {
	var end string
	cmd := &cobra.Command{
		Use:   "close --end TIME",
		Short: "Close the open accounting period at TIME (exclusive; admin)",
		Long: "Close the open accounting period at TIME (exclusive). From then on nothing may take effect\n" +
			"before TIME: transfers, posts and reversals dated earlier are refused (PERIOD_CLOSED), and\n" +
			"corrections go into the open period. Periods close in order; the same TIME again answers EXISTS.",
		Example: "  ledgerctl period close --end 2026-12-01T00:00:00Z",
		Args:    noArgs("period close"),
	}
	cmd.Flags().StringVar(&end, "end", "", "the period's end, RFC 3339 (exclusive)")
	required(cmd, "end")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		at, err := time.Parse(time.RFC3339Nano, end)
		if err != nil {
			return usageError{"--end is an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"}
		}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.cmd.ClosePeriod(ctx, &ledgerv1.ClosePeriodRequest{Ledger: c.ledger, End: timestamppb.New(at)})
			if err != nil {
				return err
			}
			return c.printResults(resp, []*ledgerv1.ItemResult{resp.GetResult()})
		})
	}
	return cmd
}

func (c *client) periodListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Closed periods: their span, trial balance and closing digest",
		Long: "Closed periods, oldest first: business time [START, END), the positions FROM..TO they span\n" +
			"(the period's statement: ledgerctl statement --from FROM --to TO ACCOUNT; its trial\n" +
			"balance: ledgerctl trial-balance --as-of TO), the trial balance and the closing digest.",
		Example: "  ledgerctl period list\n  ledgerctl period list -o json",
		Args:    noArgs("period list"),
	}
	after := cmd.Flags().Uint64("after", 0, "periods closed after this position")
	limit := cmd.Flags().Uint32("limit", 0, "at most this many (1..1000; 0: 100)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.query.ListPeriods(ctx, &ledgerv1.ListPeriodsRequest{Ledger: c.ledger, AfterPosition: *after, Limit: *limit})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "START\tEND\tFROM\tTO\tACCOUNTS\tTRIAL BALANCE (DEBITS/CREDITS)\tCLOSING DIGEST\t")
			for _, p := range resp.GetPeriods() {
				start := stamp(p.GetStart())
				if start == "" {
					start = "beginning"
				}
				var totals []string
				for _, l := range p.GetTrialBalance() {
					totals = append(totals, fmt.Sprintf("%s %s/%s", l.GetAsset(), l.GetDebitsPosted(), l.GetCreditsPosted()))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t\n", start, stamp(p.GetEnd()), p.GetFromPosition(), p.GetPosition(),
					p.GetAccounts(), strings.Join(totals, ", "), p.GetClosingDigest())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if resp.GetMore() {
				last := resp.GetPeriods()[len(resp.GetPeriods())-1].GetPosition()
				fmt.Fprintf(c.out, "more: --after %d\n", last)
			}
			_, err = fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
			return err
		})
	}
	return cmd
}
