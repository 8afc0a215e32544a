package ctl

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
)

// transferFileMax bounds a --file: ledgerd takes no larger request.
const transferFileMax = grpcapi.RecvMaxLarge

// transferFlags are transfer's flags: the two-account form (--from, --to,
// --amount, --asset), several --posting, or a whole request in --file.
type transferFlags struct {
	id, from, to, amount, asset string
	reference, effective        string
	pending                     bool
	timeout                     uint
	postings                    []string
	file                        string
}

func (c *client) transferCmd() *cobra.Command {
	var f transferFlags
	cmd := &cobra.Command{
		Use:   "transfer --id ID (--from A --to B --amount X --asset CODE | --posting FROM:TO:AMOUNT:ASSET... | --file REQUEST)",
		Short: "Move money: two accounts, several postings at once, or a whole request from a file",
		Long: `transfer creates one transfer, or with --file the whole CreateTransfersRequest a
file holds.

  --from, --to, --amount, --asset   one posting between two accounts
  --posting FROM:TO:AMOUNT:ASSET    one posting; repeat it for a multi-leg transfer, whose
                                    postings apply together or not at all, in any assets
                                    (an FX transfer). When an account id holds ':', separate
                                    the four fields with ',' instead: --posting users:1,bank:2,5.00,USD
  --file FILE                       a CreateTransfersRequest in JSON, or YAML (.yaml, .yml): several
                                    transfers, each multi-leg, "atomic": true for all or none;
                                    field names as in api/ledger/v1/ledger.proto (debit_account
                                    or debitAccount). Its "ledger", if any, must agree with --ledger.`,
		Example: `  ledgerctl transfer --id t1 --from alice --to bob --amount 10.00 --asset USD
  ledgerctl transfer --id fx1 --posting alice:desk-usd:100.00:USD --posting desk-eur:alice-eur:92.00:EUR
  ledgerctl transfer --id h1 --from alice --to bob --amount 5.00 --asset USD --pending --timeout 3600
  ledgerctl transfer --file batch.yaml -o json

  # batch.yaml
  atomic: true
  transfers:
    - id: payout-1
      postings:
        - {debit_account: treasury, credit_account: users:1, amount: "5.00", asset: USD}
        - {debit_account: treasury, credit_account: fees, amount: "0.10", asset: USD}`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError{fmt.Sprintf("transfer takes only flags, not %q", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := c.transferRequest(cmd, &f)
			if err != nil {
				return err
			}
			return c.call(cmd.Context(), func(ctx context.Context) error {
				resp, err := c.cmd.CreateTransfers(ctx, req)
				if err != nil {
					return err
				}
				return c.printResults(resp, resp.GetResults())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "transfer id (the idempotency key)")
	fs.StringVar(&f.from, "from", "", "account debited")
	fs.StringVar(&f.to, "to", "", "account credited")
	fs.StringVar(&f.amount, "amount", "", "decimal amount, e.g. 10.00")
	fs.StringVar(&f.asset, "asset", "", "asset code")
	fs.StringArrayVar(&f.postings, "posting", nil, "FROM:TO:AMOUNT:ASSET (or FROM,TO,AMOUNT,ASSET), repeatable: a multi-leg transfer")
	fs.StringVar(&f.file, "file", "", "a whole CreateTransfersRequest, JSON or YAML")
	fs.StringVar(&f.reference, "reference", "", "free text")
	fs.StringVar(&f.effective, "effective-at", "", "business time, RFC 3339")
	fs.BoolVar(&f.pending, "pending", false, "hold the amount until posted, voided or expired")
	fs.UintVar(&f.timeout, "timeout", 0, "seconds until a pending transfer expires; 0: never")
	_ = cmd.MarkFlagFilename("file", "json", "yaml", "yml")
	return cmd
}

// transferRequest builds the request from the flags, or reads it from
// --file.
//
// Errors: usageError; a file that cannot be read.
func (c *client) transferRequest(cmd *cobra.Command, f *transferFlags) (*ledgerv1.CreateTransfersRequest, error) {
	if f.file != "" {
		for _, name := range []string{"id", "from", "to", "amount", "asset", "posting", "reference", "effective-at", "pending", "timeout"} {
			if cmd.Flags().Changed(name) {
				return nil, usageError{fmt.Sprintf("--file holds the whole request: not with --%s", name)}
			}
		}
		return c.transferFile(f.file)
	}
	twoAccounts := f.from != "" || f.to != "" || f.amount != "" || f.asset != ""
	switch {
	case twoAccounts && len(f.postings) > 0:
		return nil, usageError{"transfer takes --from, --to, --amount and --asset, or --posting: not both"}
	case twoAccounts || len(f.postings) == 0:
		var missing []string
		for _, m := range []struct{ name, v string }{{"--id", f.id}, {"--from", f.from}, {"--to", f.to}, {"--amount", f.amount}, {"--asset", f.asset}} {
			if m.v == "" {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			return nil, usageError{fmt.Sprintf("transfer needs %s (transfer takes --id, --from, --to, --amount and --asset; "+
				"or --id and --posting; or --file)", strings.Join(missing, ", "))}
		}
	case f.id == "":
		return nil, usageError{"transfer needs --id"}
	}
	// Checked here, not left to ledgerd: a value past the wire's uint32
	// would wrap to another timeout (2^32 to 0: never) without a word.
	switch {
	case f.timeout > math.MaxUint32:
		return nil, usageError{"--timeout is at most " + strconv.FormatUint(math.MaxUint32, 10) + " seconds"}
	case f.timeout != 0 && !f.pending:
		return nil, usageError{"--timeout goes with --pending"}
	}
	t := &ledgerv1.Transfer{Id: f.id, Reference: f.reference, Pending: f.pending, TimeoutSeconds: uint32(f.timeout)}
	if twoAccounts {
		t.Postings = []*ledgerv1.Posting{{DebitAccount: f.from, CreditAccount: f.to, Amount: f.amount, Asset: f.asset}}
	}
	for _, spec := range f.postings {
		p, err := parsePosting(spec)
		if err != nil {
			return nil, err
		}
		t.Postings = append(t.Postings, p)
	}
	if f.effective != "" {
		at, err := time.Parse(time.RFC3339Nano, f.effective)
		if err != nil {
			return nil, usageError{"--effective-at is an RFC 3339 time, e.g. 2026-11-01T09:00:00Z"}
		}
		t.EffectiveAt = timestamppb.New(at)
	}
	return &ledgerv1.CreateTransfersRequest{Ledger: c.ledger, Transfers: []*ledgerv1.Transfer{t}}, nil
}

// parsePosting reads FROM:TO:AMOUNT:ASSET, or FROM,TO,AMOUNT,ASSET when
// the spec holds a comma (account ids may hold ':', never ',').
//
// Errors: usageError.
func parsePosting(spec string) (*ledgerv1.Posting, error) {
	sep := ":"
	if strings.Contains(spec, ",") {
		sep = ","
	}
	f := strings.Split(spec, sep)
	if len(f) != 4 || f[0] == "" || f[1] == "" || f[2] == "" || f[3] == "" {
		msg := fmt.Sprintf("--posting %q is not FROM:TO:AMOUNT:ASSET", spec)
		if sep == ":" && len(f) > 4 {
			msg += " (an account id holds ':': write FROM,TO,AMOUNT,ASSET)"
		}
		return nil, usageError{msg}
	}
	return &ledgerv1.Posting{DebitAccount: f[0], CreditAccount: f[1], Amount: f[2], Asset: f[3]}, nil
}

// transferFile reads a CreateTransfersRequest from a JSON or YAML file.
// Unknown fields are refused: a misspelt field would otherwise vanish and
// move money other than meant.
//
// Errors: usageError for a file that is not a request (with protojson's
// reason), too large, or names another ledger; the file's read error.
func (c *client) transferFile(path string) (*ledgerv1.CreateTransfersRequest, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--file: %v", err)}
	}
	defer file.Close() // read only: nothing to flush
	b, err := io.ReadAll(io.LimitReader(file, transferFileMax+1))
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", path, err)
	}
	if len(b) > transferFileMax {
		return nil, usageError{fmt.Sprintf("--file %s is larger than %d MiB, the most ledgerd takes in one request", path, transferFileMax>>20)}
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return nil, usageError{fmt.Sprintf("--file %s: %v", path, err)}
		}
	}
	req := &ledgerv1.CreateTransfersRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		return nil, usageError{fmt.Sprintf("--file %s is not a CreateTransfersRequest: %v", path, err)}
	}
	switch n := len(req.GetTransfers()); {
	case n == 0:
		return nil, usageError{fmt.Sprintf("--file %s holds no transfers", path)}
	case n > commands.ItemsPerRequestMax:
		return nil, usageError{fmt.Sprintf("--file %s holds %d transfers: at most %d a request", path, n, commands.ItemsPerRequestMax)}
	}
	switch {
	case req.GetLedger() == "":
		req.Ledger = c.ledger
	case req.GetLedger() != c.ledger && c.ledgerGiven:
		return nil, usageError{fmt.Sprintf("--file %s is for ledger %q, --ledger says %q", path, req.GetLedger(), c.ledger)}
	}
	return req, nil
}
