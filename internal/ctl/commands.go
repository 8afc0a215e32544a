package ctl

import (
	"context"
	"flag"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// amounts is a repeatable --amount flag: one per posting.
type amounts []string

func (a *amounts) String() string     { return "" }
func (a *amounts) Set(v string) error { *a = append(*a, v); return nil }

func assetDefine(ctx context.Context, c *client, args []string) error {
	args, err := c.parse(flag.NewFlagSet("asset define", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(args) != 2 {
		return usageError{"asset define takes CODE SCALE"}
	}
	scale, err := strconv.ParseUint(args[1], 10, 32)
	if err != nil {
		return usageError{"SCALE must be a whole number 0..18"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.DefineAsset(ctx, &ledgerv1.DefineAssetRequest{Ledger: c.ledger, Code: args[0], Scale: uint32(scale)})
		if err != nil {
			return err
		}
		return c.printResults([]*ledgerv1.ItemResult{resp.GetResult()})
	})
}

func accountOpen(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("account open", flag.ContinueOnError)
	asset := fs.String("asset", "", "asset code")
	normal := fs.String("normal", "credit", "normal balance: credit or debit")
	minBal := fs.String("min", "", "minimum available balance (\"0\" forbids overdraft)")
	maxBal := fs.String("max", "", "maximum balance")
	ids, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 || *asset == "" {
		return usageError{"account open takes --asset and at least one ID"}
	}
	side := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	switch *normal {
	case "credit":
	case "debit":
		side = ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT
	default:
		return usageError{"--normal is credit or debit"}
	}
	req := &ledgerv1.OpenAccountsRequest{Ledger: c.ledger}
	for _, id := range ids {
		a := &ledgerv1.Account{Id: id, Asset: *asset, NormalBalance: side, MinBalance: optional(*minBal), MaxBalance: optional(*maxBal)}
		req.Accounts = append(req.Accounts, a)
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.OpenAccounts(ctx, req)
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

// optional is nil for "", else a pointer to s.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func accountBounds(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("account bounds", flag.ContinueOnError)
	minBal := fs.String("min", "", "minimum available balance; omitted: none")
	maxBal := fs.String("max", "", "maximum balance; omitted: none")
	ids, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageError{"account bounds takes at least one ID"}
	}
	req := &ledgerv1.SetAccountBoundsRequest{Ledger: c.ledger}
	for _, id := range ids {
		req.Bounds = append(req.Bounds, &ledgerv1.AccountBounds{AccountId: id, MinBalance: optional(*minBal), MaxBalance: optional(*maxBal)})
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.SetAccountBounds(ctx, req)
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

func accountClose(ctx context.Context, c *client, args []string) error {
	ids, err := c.parse(flag.NewFlagSet("account close", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageError{"account close takes at least one ID"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.CloseAccounts(ctx, &ledgerv1.CloseAccountsRequest{Ledger: c.ledger, AccountIds: ids})
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

func transfer(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("transfer", flag.ContinueOnError)
	id := fs.String("id", "", "transfer id (the idempotency key)")
	from := fs.String("from", "", "account debited")
	to := fs.String("to", "", "account credited")
	amount := fs.String("amount", "", "decimal amount, e.g. 10.00")
	asset := fs.String("asset", "", "asset code")
	reference := fs.String("reference", "", "free text")
	effective := fs.String("effective-at", "", "business time, RFC 3339")
	pending := fs.Bool("pending", false, "hold the amount until posted, voided or expired")
	timeout := fs.Uint("timeout", 0, "seconds until a pending transfer expires; 0: never")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *id == "" || *from == "" || *to == "" || *amount == "" || *asset == "" {
		return usageError{"transfer takes --id, --from, --to, --amount and --asset"}
	}
	// Checked here, not left to ledgerd: a value past the wire's uint32
	// would wrap to another timeout (2^32 to 0: never) without a word.
	switch {
	case *timeout > math.MaxUint32:
		return usageError{"--timeout is at most " + strconv.FormatUint(math.MaxUint32, 10) + " seconds"}
	case *timeout != 0 && !*pending:
		return usageError{"--timeout goes with --pending"}
	}
	t := &ledgerv1.Transfer{Id: *id, Reference: *reference, Pending: *pending, TimeoutSeconds: uint32(*timeout),
		Postings: []*ledgerv1.Posting{{DebitAccount: *from, CreditAccount: *to, Amount: *amount, Asset: *asset}}}
	if *effective != "" {
		at, err := time.Parse(time.RFC3339Nano, *effective)
		if err != nil {
			return usageError{"--effective-at is an RFC 3339 time, e.g. 2026-11-01T09:00:00Z"}
		}
		t.EffectiveAt = timestamppb.New(at)
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Ledger: c.ledger, Transfers: []*ledgerv1.Transfer{t}})
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

func post(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("post", flag.ContinueOnError)
	id := fs.String("id", "", "the post's own id")
	pendingID := fs.String("pending-id", "", "the pending transfer")
	var amts amounts
	fs.Var(&amts, "amount", "amount to post, one per posting in order; none: everything held")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *id == "" || *pendingID == "" {
		return usageError{"post takes --id and --pending-id"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.PostPendingTransfers(ctx, &ledgerv1.PostPendingTransfersRequest{Ledger: c.ledger,
			Posts: []*ledgerv1.PostPending{{Id: *id, PendingId: *pendingID, Amounts: amts}}})
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

func void(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("void", flag.ContinueOnError)
	id := fs.String("id", "", "the void's own id")
	pendingID := fs.String("pending-id", "", "the pending transfer")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *id == "" || *pendingID == "" {
		return usageError{"void takes --id and --pending-id"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.VoidPendingTransfers(ctx, &ledgerv1.VoidPendingTransfersRequest{Ledger: c.ledger,
			Voids: []*ledgerv1.VoidPending{{Id: *id, PendingId: *pendingID}}})
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}

func reverse(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("reverse", flag.ContinueOnError)
	id := fs.String("id", "", "the reversal's own id")
	transferID := fs.String("transfer-id", "", "the posted transfer to reverse")
	var amts amounts
	fs.Var(&amts, "amount", "amount to reverse, one per posting in order; none: all that is left")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *id == "" || *transferID == "" {
		return usageError{"reverse takes --id and --transfer-id"}
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.cmd.ReverseTransfers(ctx, &ledgerv1.ReverseTransfersRequest{Ledger: c.ledger,
			Reversals: []*ledgerv1.Reversal{{Id: *id, TransferId: *transferID, Amounts: amts}}})
		if err != nil {
			return err
		}
		return c.printResults(resp.GetResults())
	})
}
