// Package ctl is ledgerctl: a command line client of a running ledgerd.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// callTimeout bounds one call to ledgerd.
const callTimeout = 30 * time.Second

const usage = `ledgerctl: a client of ledgerd

Usage:
  ledgerctl [global flags] asset define CODE SCALE
  ledgerctl [global flags] account open --asset CODE [--normal credit|debit] [--min X] [--max X] ID...
  ledgerctl [global flags] transfer --id ID --from ACCOUNT --to ACCOUNT --amount X --asset CODE [--reference R]
  ledgerctl [global flags] balance [--min-position P] ACCOUNT...

Global flags (before the command, or after it):
  --addr    ledgerd gRPC address (env LEDGER_ADDR, default 127.0.0.1:7070)
  --ledger  ledger name (env LEDGER_LEDGER, default "default")

Exit codes: 0 every item CREATED or EXISTS; 1 an item was refused or a call
failed; 2 a usage error.
`

// Run runs ledgerctl with args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	g := globals{addr: or(getenv("LEDGER_ADDR"), "127.0.0.1:7070"), ledger: or(getenv("LEDGER_LEDGER"), "default")}
	fs := flag.NewFlagSet("ledgerctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "ledgerctl: %v\n\n%s", err, usage)
		return 2
	case fs.NArg() == 0:
		fmt.Fprint(stderr, usage)
		return 2
	}
	rest := fs.Args()
	type command struct {
		words []string
		run   func(ctx context.Context, c *client, args []string) error
	}
	cmds := []command{
		{[]string{"asset", "define"}, assetDefine},
		{[]string{"account", "open"}, accountOpen},
		{[]string{"transfer"}, transfer},
		{[]string{"balance"}, balance},
	}
	for _, cmd := range cmds {
		if len(rest) < len(cmd.words) || strings.Join(rest[:len(cmd.words)], " ") != strings.Join(cmd.words, " ") {
			continue
		}
		c := &client{globals: g, out: stdout}
		err := cmd.run(ctx, c, rest[len(cmd.words):])
		if c.conn != nil {
			_ = c.conn.Close() // Nothing is left to flush: every call has returned.
		}
		var ue usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, usage)
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "ledgerctl: %s\n\n%s", ue.msg, usage)
			return 2
		case err != nil:
			fmt.Fprintln(stderr, "ledgerctl:", c.describe(err))
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "ledgerctl: unknown command %q\n\n%s", strings.Join(rest, " "), usage)
	return 2
}

type globals struct{ addr, ledger string }

// register lets global flags also follow the command words.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "ledgerd gRPC address")
	fs.StringVar(&g.ledger, "ledger", g.ledger, "ledger name")
}

type client struct {
	globals
	out   io.Writer
	conn  *grpc.ClientConn // nil until connect
	cmd   ledgerv1.CommandServiceClient
	query ledgerv1.QueryServiceClient
}

// connect makes the client of c.addr. Commands call it after parsing their
// flags, because --addr may follow the command words. It does no I/O: the
// first call dials.
//
// Errors: a malformed address.
func (c *client) connect() error {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("address %q: %w", c.addr, err)
	}
	c.conn = conn
	c.cmd, c.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	return nil
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errRefused says an item got a result other than CREATED or EXISTS.
var errRefused = errors.New("refused")

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// describe prints a gRPC status as code and message, saying which ledgerd
// could not be reached when that is the trouble.
func (c *client) describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	if st.Code() == codes.Unavailable {
		msg = fmt.Sprintf("ledgerd at %s is unavailable (is it running? see --addr): %s", c.addr, msg)
	}
	return msg
}

// parse parses a subcommand's flags, which may be mixed with its arguments.
func (c *client) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	c.register(fs)
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

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
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.cmd.DefineAsset(ctx, &ledgerv1.DefineAssetRequest{Ledger: c.ledger, Code: args[0], Scale: uint32(scale)})
	if err != nil {
		return err
	}
	return c.printResults([]*ledgerv1.ItemResult{resp.GetResult()})
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
		a := &ledgerv1.Account{Id: id, Asset: *asset, NormalBalance: side}
		if *minBal != "" {
			a.MinBalance = minBal
		}
		if *maxBal != "" {
			a.MaxBalance = maxBal
		}
		req.Accounts = append(req.Accounts, a)
	}
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.cmd.OpenAccounts(ctx, req)
	if err != nil {
		return err
	}
	return c.printResults(resp.GetResults())
}

func transfer(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("transfer", flag.ContinueOnError)
	id := fs.String("id", "", "transfer id (the idempotency key)")
	from := fs.String("from", "", "account debited")
	to := fs.String("to", "", "account credited")
	amount := fs.String("amount", "", "decimal amount, e.g. 10.00")
	asset := fs.String("asset", "", "asset code")
	reference := fs.String("reference", "", "free text")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 || *id == "" || *from == "" || *to == "" || *amount == "" || *asset == "" {
		return usageError{"transfer takes --id, --from, --to, --amount and --asset"}
	}
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.cmd.CreateTransfers(ctx, &ledgerv1.CreateTransfersRequest{Ledger: c.ledger, Transfers: []*ledgerv1.Transfer{{
		Id: *id, Reference: *reference,
		Postings: []*ledgerv1.Posting{{DebitAccount: *from, CreditAccount: *to, Amount: *amount, Asset: *asset}},
	}}})
	if err != nil {
		return err
	}
	return c.printResults(resp.GetResults())
}

func balance(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("balance", flag.ContinueOnError)
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	ids, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageError{"balance takes at least one ACCOUNT"}
	}
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.query.GetBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: c.ledger, Accounts: ids, MinPosition: *minPos})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACCOUNT\tASSET\tBALANCE\tAVAILABLE\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tPOSITION\t")
	found := map[string]bool{}
	for _, b := range resp.GetBalances() {
		found[b.GetAccount()] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", b.GetAccount(), b.GetAsset(), b.GetBalance(), b.GetAvailable(),
			b.GetDebitsPosted(), b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending(), b.GetPosition())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no such account: %s", strings.Join(missing, ", "))
	}
	return nil
}

// printResults prints one line per item and fails if any was refused.
func (c *client) printResults(results []*ledgerv1.ItemResult) error {
	refused := 0
	for _, r := range results {
		code := strings.TrimPrefix(r.GetCode().String(), "RESULT_CODE_")
		line := fmt.Sprintf("%-12s %s", code, r.GetId())
		if r.GetPosition() > 0 {
			line += fmt.Sprintf("  position %d", r.GetPosition())
		}
		if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED && r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS {
			refused++
			if r.GetDetail() != "" {
				line += "  " + r.GetDetail()
			}
		}
		fmt.Fprintln(c.out, line)
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d items: %w", refused, len(results), errRefused)
	}
	return nil
}
