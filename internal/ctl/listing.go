package ctl

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

func (c *client) assetListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the ledger's assets in code order (also: assets list)",
		Example: "  ledgerctl asset list\n  ledgerctl asset list --all -o json",
		Args:    noArgs("assets list"),
	}
	fs := cmd.Flags()
	limit := fs.Uint("limit", 100, fmt.Sprintf("assets per page, at most %d", queries.AssetsPageMax))
	all := fs.Bool("all", false, "follow every page")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkLimit(*limit, queries.AssetsPageMax); err != nil {
			return err
		}
		req := &ledgerv1.ListAssetsRequest{Ledger: c.ledger, Limit: uint32(*limit), MinPosition: *minPos}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			var (
				assets []*ledgerv1.AssetView
				pos    uint64
				more   bool
			)
			for range pagesMax {
				resp, err := c.query.ListAssets(ctx, req)
				if err != nil {
					return err
				}
				if !c.human() {
					if err := c.printJSON(resp); err != nil {
						return err
					}
				}
				assets, pos = append(assets, resp.GetAssets()...), resp.GetPosition()
				req.Cursor, more = resp.GetNextCursor(), resp.GetNextCursor() != ""
				if !*all || !more {
					break
				}
			}
			if !c.human() {
				return nil
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "CODE\tSCALE\tDEFINED AT\t")
			for _, a := range assets {
				fmt.Fprintf(tw, "%s\t%d\t%d\t\n", a.GetCode(), a.GetScale(), a.GetPosition())
			}
			return c.listFooter(tw.Flush(), pos, more)
		})
	}
	return cmd
}

// listFooter ends a listing's table: the position, and a hint when pages
// are left.
func (c *client) listFooter(flushErr error, pos uint64, more bool) error {
	if flushErr != nil {
		return flushErr
	}
	fmt.Fprintf(c.out, "as of position %d", pos)
	if more {
		fmt.Fprint(c.out, "  (more: --all)")
	}
	_, err := fmt.Fprintln(c.out)
	return err
}

func (c *client) accountListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List accounts by id prefix or pattern, category, asset, status, metadata; with balances (also: accounts list)",
		Example: "  ledgerctl account list --prefix users:\n" +
			"  ledgerctl account list --category assets --balances\n" +
			"  ledgerctl account list --pattern 'users:*:wallet' --status open --balances\n" +
			"  ledgerctl account list --metadata tier=gold --metadata region=eu --all -o json",
		Args: noArgs("accounts list"),
	}
	fs := cmd.Flags()
	prefix := fs.String("prefix", "", "accounts whose id starts with this")
	pattern := fs.String("pattern", "", "accounts whose id matches: ':' segments, \"*\" for any one segment")
	category := fs.String("category", "", "accounts of this category or of one of its descendants")
	asset := fs.String("asset", "", "accounts of this asset")
	statusName := fs.String("status", "", "open or closed")
	frozen := fs.Bool("frozen", false, "only the accounts frozen now")
	metadata := fs.StringArray("metadata", nil, "KEY=VALUE the account's metadata holds (repeat, at most 8)")
	balances := fs.Bool("balances", false, "each account's balance with it")
	limit := fs.Uint("limit", 100, fmt.Sprintf("accounts per page, at most %d", queries.AccountsPageMax))
	all := fs.Bool("all", false, "follow every page")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"open", "closed"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkLimit(*limit, queries.AccountsPageMax); err != nil {
			return err
		}
		req := &ledgerv1.ListAccountsRequest{Ledger: c.ledger, Prefix: *prefix, Pattern: *pattern, Category: *category, Asset: *asset,
			IncludeBalances: *balances, Limit: uint32(*limit), MinPosition: *minPos, Frozen: *frozen}
		switch *statusName {
		case "":
		case "open":
			req.Status = ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN
		case "closed":
			req.Status = ledgerv1.AccountStatus_ACCOUNT_STATUS_CLOSED
		default:
			return usageError{"--status is open or closed"}
		}
		md, err := metadataFlag(*metadata)
		if err != nil {
			return err
		}
		req.Metadata = md
		return c.accountsList(cmd.Context(), req, *all)
	}
	return cmd
}

func (c *client) accountsList(ctx context.Context, req *ledgerv1.ListAccountsRequest, all bool) error {
	return c.call(ctx, func(ctx context.Context) error {
		var (
			views []*ledgerv1.AccountView
			pos   uint64
			more  bool
		)
		// A page may be short, even empty, and still have a cursor: the
		// server examines a bounded number of accounts per page.
		for range pagesMax {
			resp, err := c.query.ListAccounts(ctx, req)
			if err != nil {
				return err
			}
			if !c.human() {
				if err := c.printJSON(resp); err != nil {
					return err
				}
			}
			views, pos = append(views, resp.GetAccounts()...), resp.GetPosition()
			req.Cursor, more = resp.GetNextCursor(), resp.GetNextCursor() != ""
			if !all || !more {
				break
			}
		}
		if !c.human() {
			return nil
		}
		tw := c.tabwriter()
		header := "ID\tASSET\tNORMAL\tSTATUS\tMIN\tMAX\tOPENED\tMETADATA\t"
		if req.GetIncludeBalances() {
			header += "BALANCE\tAVAILABLE\t"
		}
		fmt.Fprintln(tw, header)
		for _, a := range views {
			var md []string
			for _, k := range slices.Sorted(maps.Keys(a.GetMetadata())) {
				md = append(md, k+"="+a.GetMetadata()[k])
			}
			status := strings.ToLower(strings.TrimPrefix(a.GetStatus().String(), "ACCOUNT_STATUS_"))
			if a.GetStatus() == ledgerv1.AccountStatus_ACCOUNT_STATUS_OPEN && a.GetFrozenPosition() != 0 {
				status = fmt.Sprintf("frozen@%d", a.GetFrozenPosition()) // open, its debits refused
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t", a.GetId(), a.GetAsset(),
				strings.ToLower(strings.TrimPrefix(a.GetNormalBalance().String(), "NORMAL_BALANCE_")),
				status, a.GetMinBalance(), a.GetMaxBalance(), a.GetOpenedPosition(), strings.Join(md, ","))
			if req.GetIncludeBalances() {
				fmt.Fprintf(tw, "%s\t%s\t", a.GetBalance().GetBalance(), a.GetBalance().GetAvailable())
			}
			fmt.Fprintln(tw)
		}
		return c.listFooter(tw.Flush(), pos, more)
	})
}

// transferRangeFlags are transfers list's asset, amount and time range
// flags.
type transferRangeFlags struct {
	asset, minAmount, maxAmount                          string
	effectiveFrom, effectiveTo, recordedFrom, recordedTo string
}

func (f *transferRangeFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.asset, "asset", "", "transfers with a posting in this asset")
	fs.StringVar(&f.minAmount, "min-amount", "", "with --asset: a posting of at least this amount")
	fs.StringVar(&f.maxAmount, "max-amount", "", "with --asset: a posting of at most this amount (in the same posting as --min-amount)")
	fs.StringVar(&f.effectiveFrom, "effective-from", "", "effective at or after this RFC 3339 time")
	fs.StringVar(&f.effectiveTo, "effective-to", "", "effective before this RFC 3339 time")
	fs.StringVar(&f.recordedFrom, "recorded-from", "", "recorded at or after this RFC 3339 time")
	fs.StringVar(&f.recordedTo, "recorded-to", "", "recorded before this RFC 3339 time")
}

// apply sets the flags given on req.
func (f *transferRangeFlags) apply(req *ledgerv1.ListTransfersRequest) error {
	req.Asset, req.MinAmount, req.MaxAmount = f.asset, f.minAmount, f.maxAmount
	for _, t := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{
		{"effective-from", f.effectiveFrom, &req.EffectiveFrom}, {"effective-to", f.effectiveTo, &req.EffectiveTo},
		{"recorded-from", f.recordedFrom, &req.RecordedFrom}, {"recorded-to", f.recordedTo, &req.RecordedTo},
	} {
		if t.value == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, t.value)
		if err != nil {
			return usageError{fmt.Sprintf("--%s is an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", t.flag)}
		}
		*t.dst = timestamppb.New(at)
	}
	return nil
}
