package ctl

import (
	"context"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// accountFreezeCmd is "account freeze" (freeze true) or "account unfreeze".
func (c *client) accountFreezeCmd(freeze bool) *cobra.Command {
	var reason string
	verb, short := "unfreeze", "Lift accounts' freezes"
	if freeze {
		verb, short = "freeze", "Freeze accounts: their debits are refused (ACCOUNT_FROZEN) until unfrozen; credits pass"
	}
	cmd := &cobra.Command{
		Use:     verb + " ID... [--reason TEXT]",
		Short:   short,
		Example: "  ledgerctl account " + verb + " --reason \"card reported stolen\" users:42:wallet",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if len(ids) == 0 {
				return usageError{"account " + verb + " takes at least one ID"}
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				if freeze {
					resp, err := c.mon.FreezeAccounts(ctx, &ledgerv1.FreezeAccountsRequest{Ledger: c.ledger, AccountIds: ids, Reason: reason})
					if err != nil {
						return err
					}
					return c.printResults(resp, resp.GetResults())
				}
				resp, err := c.mon.UnfreezeAccounts(ctx, &ledgerv1.UnfreezeAccountsRequest{Ledger: c.ledger, AccountIds: ids, Reason: reason})
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the event, at most 1,024 bytes)")
	return cmd
}
