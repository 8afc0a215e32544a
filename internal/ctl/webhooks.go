package ctl

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// webhooksCreateCmd subscribes a URL and prints the signing secret, shown
// once.
func (c *client) webhooksCreateCmd() *cobra.Command {
	req := &ledgerv1.CreateSubscriptionRequest{}
	cmd := &cobra.Command{
		Use:   "create --url URL",
		Short: "Subscribe a URL to the ledger's events (admin); prints the signing secret, once",
		Example: "  ledgerctl webhooks create --url https://hooks.example.com/ledger --type TransferCommitted\n" +
			"  ledgerctl webhooks create --url https://hooks.example.com/eur --account 'users:*:eur' --from 1",
		Args: noArgs("webhooks create"),
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Url, "url", "", "the endpoint (http or https)")
	fs.StringArrayVar(&req.EventTypes, "type", nil, "an event type to deliver (repeatable); none: all")
	fs.StringVar(&req.AccountPattern, "account", "", "only events touching an account matching this pattern")
	fs.Uint64Var(&req.FromPosition, "from", 0, "deliver from this position on; 0: events after the head now")
	required(cmd, "url")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req.Ledger = c.ledger
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := ledgerv1.NewWebhookServiceClient(c.conn).CreateSubscription(ctx, req)
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			fmt.Fprintln(c.out, resp.GetSecret())
			fmt.Fprintf(c.out, "id %s  url %s  from position %d  (the secret above is shown once: it signs every delivery)\n",
				resp.GetSubscription().GetId(), resp.GetSubscription().GetUrl(), resp.GetSubscription().GetDeliveredPosition()+1)
			return nil
		})
	}
	return cmd
}

func (c *client) webhooksListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the ledger's subscriptions with their cursor, dead letters and circuit",
		Example: "  ledgerctl webhooks list --ledger payments",
		Args:    noArgs("webhooks list"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := ledgerv1.NewWebhookServiceClient(c.conn).ListSubscriptions(ctx, &ledgerv1.ListSubscriptionsRequest{Ledger: c.ledger})
				if err != nil {
					return err
				}
				if !c.human() {
					return c.printJSON(resp)
				}
				tw := c.tabwriter()
				fmt.Fprintln(tw, "ID\tURL\tTYPES\tACCOUNTS\tDELIVERED\tDEAD\tCIRCUIT\tSTATE\t")
				for _, s := range resp.GetSubscriptions() {
					types := strings.Join(s.GetEventTypes(), ",")
					if types == "" {
						types = "all"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", s.GetId(), s.GetUrl(), types, cmp.Or(s.GetAccountPattern(), "all"),
						s.GetDeliveredPosition(), s.GetDeadLetters(), s.GetCircuit(), s.GetState())
				}
				return tw.Flush()
			})
		},
	}
}

func (c *client) webhooksDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Stop and remove a subscription (admin); its delivery log stays until it expires",
		Example: "  ledgerctl webhooks delete wh_0123456789abcdef",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{"webhooks delete takes one subscription id"}
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := ledgerv1.NewWebhookServiceClient(c.conn).DeleteSubscription(ctx,
					&ledgerv1.DeleteSubscriptionRequest{Ledger: c.ledger, Id: args[0]})
				if err != nil {
					return err
				}
				if !c.human() {
					return c.printJSON(resp)
				}
				fmt.Fprintf(c.out, "deleted %s\n", args[0])
				return nil
			})
		},
	}
}

func (c *client) webhooksDeliveriesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deliveries ID",
		Short:   "A subscription's delivery log, newest first",
		Example: "  ledgerctl webhooks deliveries wh_0123456789abcdef --status dead",
	}
	status := cmd.Flags().String("status", "", "pending, delivered or dead; none: all")
	limit := cmd.Flags().Uint32("limit", 0, "at most this many (1..1000; 0: 100)")
	cursor := cmd.Flags().String("cursor", "", "the next page: the cursor the previous one printed")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{"webhooks deliveries takes one subscription id"}
		}
		st, ok := map[string]ledgerv1.DeliveryStatus{"": ledgerv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED,
			"pending": ledgerv1.DeliveryStatus_DELIVERY_STATUS_PENDING, "delivered": ledgerv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED,
			"dead": ledgerv1.DeliveryStatus_DELIVERY_STATUS_DEAD}[*status]
		if !ok {
			return usageError{"--status is pending, delivered or dead"}
		}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := ledgerv1.NewWebhookServiceClient(c.conn).ListDeliveries(ctx, &ledgerv1.ListDeliveriesRequest{
				Ledger: c.ledger, SubscriptionId: args[0], Status: st, Limit: *limit, Cursor: *cursor})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "POSITION\tTYPE\tSTATUS\tATTEMPTS\tCODE\tLATENCY MS\tLAST ATTEMPT\tNEXT ATTEMPT\tERROR\t")
			for _, d := range resp.GetDeliveries() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", d.GetPosition(), d.GetEventType(),
					strings.ToLower(strings.TrimPrefix(d.GetStatus().String(), "DELIVERY_STATUS_")), d.GetAttempts(),
					d.GetResponseCode(), d.GetLatencyMs(), stamp(d.GetLastAttemptAt()), stamp(d.GetNextAttemptAt()), d.GetError())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if resp.GetNextCursor() != "" {
				fmt.Fprintf(c.out, "more: --cursor %s\n", resp.GetNextCursor())
			}
			return nil
		})
	}
	return cmd
}

func (c *client) webhooksReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay ID (--dead | --from POSITION)",
		Short: "Deliver again (admin): the dead letters, or every event from a position on",
		Example: "  ledgerctl webhooks replay wh_0123456789abcdef --dead\n" +
			"  ledgerctl webhooks replay wh_0123456789abcdef --from 1200",
	}
	dead := cmd.Flags().Bool("dead", false, "the dead letters")
	from := cmd.Flags().Uint64("from", 0, "every event from this position on (the cursor moves back)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{"webhooks replay takes one subscription id"}
		}
		if *dead == (*from > 0) {
			return usageError{"webhooks replay takes --dead or --from, one of the two"}
		}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := ledgerv1.NewWebhookServiceClient(c.conn).ReplayDeliveries(ctx, &ledgerv1.ReplayDeliveriesRequest{
				Ledger: c.ledger, SubscriptionId: args[0], DeadLetters: *dead, FromPosition: *from})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			if *dead {
				fmt.Fprintf(c.out, "queued %d dead letters\n", resp.GetQueued())
			} else {
				// The cursor moved back over positions: those the
				// subscription filters out are passed over again, not sent.
				fmt.Fprintf(c.out, "queued %d positions from %d (events the subscription does not take are passed over)\n",
					resp.GetQueued(), *from)
			}
			return nil
		})
	}
	return cmd
}
