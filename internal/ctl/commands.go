package ctl

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

func (c *client) assetDefineCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "define CODE SCALE",
		Short:   "Define an asset and its scale (decimal places, 0..18)",
		Example: "  ledgerctl asset define USD 2\n  ledgerctl asset define BTC 8 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError{"asset define takes CODE SCALE"}
			}
			scale, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil {
				return usageError{"SCALE must be a whole number 0..18"}
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.DefineAsset(ctx, &ledgerv1.DefineAssetRequest{Ledger: c.ledger, Code: args[0], Scale: uint32(scale)})
				if err != nil {
					return err
				}
				return c.printResults(resp, []*ledgerv1.ItemResult{resp.GetResult()})
			})
		},
	}
}

func (c *client) accountOpenCmd() *cobra.Command {
	var asset, normal, minBal, maxBal string
	var metadata []string
	cmd := &cobra.Command{
		Use:   "open ID... --asset CODE",
		Short: "Open accounts of an asset, with optional bounds",
		Example: "  ledgerctl account open --asset USD alice bob\n" +
			"  ledgerctl account open --asset USD --min 0 users:42:wallet      (no overdraft)\n" +
			"  ledgerctl account open --asset USD --normal debit bank:acme\n" +
			"  ledgerctl account open --asset USD --metadata tier=gold users:7:wallet",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if len(ids) == 0 {
				return usageError{"account open takes --asset and at least one ID"}
			}
			side := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
			switch normal {
			case "credit":
			case "debit":
				side = ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT
			default:
				return usageError{"--normal is credit or debit"}
			}
			md, err := metadataFlag(metadata)
			if err != nil {
				return err
			}
			req := &ledgerv1.OpenAccountsRequest{Ledger: c.ledger}
			for _, id := range ids {
				a := &ledgerv1.Account{Id: id, Asset: asset, NormalBalance: side, MinBalance: optional(minBal), MaxBalance: optional(maxBal),
					Metadata: md}
				req.Accounts = append(req.Accounts, a)
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.OpenAccounts(ctx, req)
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&asset, "asset", "", "asset code")
	fs.StringVar(&normal, "normal", "credit", "normal balance: credit or debit")
	fs.StringVar(&minBal, "min", "", "minimum available balance (\"0\" forbids overdraft)")
	fs.StringVar(&maxBal, "max", "", "maximum balance")
	fs.StringArrayVar(&metadata, "metadata", nil, "KEY=VALUE of the accounts' metadata (repeat)")
	required(cmd, "asset")
	_ = cmd.RegisterFlagCompletionFunc("normal", cobra.FixedCompletions([]string{"credit", "debit"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// metadataFlag reads repeated --metadata KEY=VALUE flags; nil for none.
func metadataFlag(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	md := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("--metadata %q: want KEY=VALUE", kv)}
		}
		md[k] = v
	}
	return md, nil
}

// optional is nil for "", else a pointer to s.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (c *client) accountBoundsCmd() *cobra.Command {
	var minBal, maxBal string
	cmd := &cobra.Command{
		Use:   "bounds ID...",
		Short: "Set accounts' bounds (an omitted bound is removed)",
		Example: "  ledgerctl account bounds --min 0 alice          (no overdraft; no maximum)\n" +
			"  ledgerctl account bounds --min -100 --max 5000 alice bob",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if len(ids) == 0 {
				return usageError{"account bounds takes at least one ID"}
			}
			req := &ledgerv1.SetAccountBoundsRequest{Ledger: c.ledger}
			for _, id := range ids {
				req.Bounds = append(req.Bounds, &ledgerv1.AccountBounds{AccountId: id, MinBalance: optional(minBal), MaxBalance: optional(maxBal)})
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.SetAccountBounds(ctx, req)
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	cmd.Flags().StringVar(&minBal, "min", "", "minimum available balance; omitted: none")
	cmd.Flags().StringVar(&maxBal, "max", "", "maximum balance; omitted: none")
	return cmd
}

func (c *client) accountCloseCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "close ID...",
		Short:   "Close accounts (none may hold pending amounts)",
		Example: "  ledgerctl account close carol",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if len(ids) == 0 {
				return usageError{"account close takes at least one ID"}
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.CloseAccounts(ctx, &ledgerv1.CloseAccountsRequest{Ledger: c.ledger, AccountIds: ids})
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
}

func (c *client) postCmd() *cobra.Command {
	var id, pendingID string
	var amts []string
	cmd := &cobra.Command{
		Use:   "post --id ID --pending-id ID",
		Short: "Post a pending transfer, in full or in part (one --amount per posting; none: all)",
		Example: "  ledgerctl post --id p1 --pending-id h1\n" +
			"  ledgerctl post --id p2 --pending-id h2 --amount 4.00      (the rest is released)",
		Args: noArgs("post"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.PostPendingTransfers(ctx, &ledgerv1.PostPendingTransfersRequest{Ledger: c.ledger,
					Posts: []*ledgerv1.PostPending{{Id: id, PendingId: pendingID, Amounts: amts}}})
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the post's own id")
	cmd.Flags().StringVar(&pendingID, "pending-id", "", "the pending transfer")
	cmd.Flags().StringArrayVar(&amts, "amount", nil, "amount to post, one per posting in order; none: everything held")
	required(cmd, "id", "pending-id")
	return cmd
}

func (c *client) voidCmd() *cobra.Command {
	var id, pendingID string
	cmd := &cobra.Command{
		Use:     "void --id ID --pending-id ID",
		Short:   "Void a pending transfer: release what it holds",
		Example: "  ledgerctl void --id v1 --pending-id h1",
		Args:    noArgs("void"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.VoidPendingTransfers(ctx, &ledgerv1.VoidPendingTransfersRequest{Ledger: c.ledger,
					Voids: []*ledgerv1.VoidPending{{Id: id, PendingId: pendingID}}})
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the void's own id")
	cmd.Flags().StringVar(&pendingID, "pending-id", "", "the pending transfer")
	required(cmd, "id", "pending-id")
	return cmd
}

func (c *client) reverseCmd() *cobra.Command {
	var id, transferID string
	var amts []string
	cmd := &cobra.Command{
		Use:   "reverse --id ID --transfer-id ID",
		Short: "Reverse a posted transfer, in full or in part (one --amount per posting)",
		Example: "  ledgerctl reverse --id r1 --transfer-id t1 --amount 3.00\n" +
			"  ledgerctl reverse --id r2 --transfer-id t1                 (all that is left)",
		Args: noArgs("reverse"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.ReverseTransfers(ctx, &ledgerv1.ReverseTransfersRequest{Ledger: c.ledger,
					Reversals: []*ledgerv1.Reversal{{Id: id, TransferId: transferID, Amounts: amts}}})
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the reversal's own id")
	cmd.Flags().StringVar(&transferID, "transfer-id", "", "the posted transfer to reverse")
	cmd.Flags().StringArrayVar(&amts, "amount", nil, "amount to reverse, one per posting in order; none: all that is left")
	required(cmd, "id", "transfer-id")
	return cmd
}
