package ctl

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// pagesMax bounds how many pages --all follows.
const pagesMax = 10000

// checkLimit refuses a --limit over max, the largest page ledgerd serves
// (queries.StatementLimitMax, queries.TransfersPageMax): a usage error here
// rather than a value that wraps in the wire's uint32 (2^32+1 to 1) and asks
// for another page size.
func checkLimit(limit, max uint) error {
	if limit > max {
		return usageError{fmt.Sprintf("--limit is at most %d", max)}
	}
	return nil
}

// missing returns the ids that are not in found, in order, as an error, or nil.
func missing(what string, ids []string, found map[string]bool) error {
	var absent []string
	for _, id := range ids {
		if !found[id] {
			absent = append(absent, id)
		}
	}
	if len(absent) > 0 {
		return fmt.Errorf("no such %s: %s", what, strings.Join(absent, ", "))
	}
	return nil
}

// table is a tabwriter whose output is buffered until its Flush: the
// tabwriter writes each cell and its padding apart, a system call each
// on a terminal or a pipe (a replay's 10,000 accounts took a third of a
// second of them).
type table struct {
	*tabwriter.Writer
	buf *bufio.Writer
}

// Flush writes the table.
func (t table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	return t.buf.Flush()
}

func (c *client) tabwriter() table {
	buf := bufio.NewWriterSize(c.out, tableBufferBytes)
	return table{Writer: tabwriter.NewWriter(buf, 0, 0, 2, ' ', tabwriter.AlignRight), buf: buf}
}

// tableBufferBytes is the output a table buffers between writes.
const tableBufferBytes = 64 << 10

func (c *client) balanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "balance ACCOUNT...",
		Short: "Accounts' balances, now, at a past position, or from the writer (--strong)",
		Example: "  ledgerctl balance alice bob\n" +
			"  ledgerctl balance --min-position 42 alice      (read your write: wait for position 42)\n" +
			"  ledgerctl balance --as-of 10 alice -o json",
	}
	fs := cmd.Flags()
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	asOf := fs.Uint64("as-of", 0, "balances just after this position")
	strong := fs.Bool("strong", false, "ask the writer: every acknowledged command included")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		return c.balance(cmd.Context(), ids, *minPos, *asOf, *strong)
	}
	return cmd
}

func (c *client) balance(ctx context.Context, ids []string, minPos, asOf uint64, strong bool) error {
	if len(ids) == 0 {
		return usageError{"balance takes at least one ACCOUNT"}
	}
	if strong && asOf != 0 {
		return usageError{"--strong reads the balances now: not with --as-of"}
	}
	req := &ledgerv1.GetBalancesRequest{Ledger: c.ledger, Accounts: ids, MinPosition: minPos, AsOfPosition: asOf}
	if strong {
		req.Consistency = ledgerv1.Consistency_CONSISTENCY_STRONG
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.query.GetBalances(ctx, req)
		if err != nil {
			return err
		}
		found := map[string]bool{}
		for _, b := range resp.GetBalances() {
			found[b.GetAccount()] = true
		}
		// An account that does not exist fails the command in any output.
		if !c.human() {
			if err := c.printJSON(resp); err != nil {
				return err
			}
			return missing("account", ids, found)
		}
		tw := c.tabwriter()
		fmt.Fprintln(tw, "ACCOUNT\tASSET\tBALANCE\tAVAILABLE\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tPOSITION\t")
		for _, b := range resp.GetBalances() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", b.GetAccount(), b.GetAsset(), b.GetBalance(), b.GetAvailable(),
				b.GetDebitsPosted(), b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending(), b.GetPosition())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
		return missing("account", ids, found)
	})
}

func (c *client) statementCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "statement ACCOUNT",
		Short: "An account's statement: every movement with the running balance",
		Example: "  ledgerctl statement alice\n" +
			"  ledgerctl statement --pending --all alice             (holds too; every page)\n" +
			"  ledgerctl statement --from 100 --limit 50 alice -o json",
	}
	fs := cmd.Flags()
	from := fs.Uint64("from", 0, "first position")
	to := fs.Uint64("to", 0, "last position")
	limit := fs.Uint("limit", 100, fmt.Sprintf("lines per page, at most %d", queries.StatementLimitMax))
	pending := fs.Bool("pending", false, "include pending movements")
	all := fs.Bool("all", false, "follow every page")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	cmd.RunE = func(cmd *cobra.Command, rest []string) error {
		if len(rest) != 1 {
			return usageError{"statement takes one ACCOUNT"}
		}
		return c.statement(cmd.Context(), &ledgerv1.ListStatementRequest{Ledger: c.ledger, Account: rest[0], FromPosition: *from,
			ToPosition: *to, IncludePending: *pending, MinPosition: *minPos}, *limit, *all)
	}
	return cmd
}

func (c *client) statement(ctx context.Context, req *ledgerv1.ListStatementRequest, limit uint, all bool) error {
	if err := checkLimit(limit, queries.StatementLimitMax); err != nil {
		return err
	}
	req.Limit = uint32(limit)
	return c.call(ctx, func(ctx context.Context) error {
		var pages []*ledgerv1.ListStatementResponse
		for range pagesMax {
			resp, err := c.query.ListStatement(ctx, req)
			if err != nil {
				return err
			}
			pages = append(pages, resp)
			if !all || resp.GetNextCursor() == "" {
				break
			}
			req.Cursor = resp.GetNextCursor()
		}
		if !c.human() {
			for _, p := range pages {
				if err := c.printJSON(p); err != nil {
					return err
				}
			}
			return nil
		}
		first, last := pages[0], pages[len(pages)-1]
		fmt.Fprintf(c.out, "%s (%s)  opening balance %s\n", first.GetAccount(), first.GetAsset(), first.GetOpeningBalance())
		tw := c.tabwriter()
		fmt.Fprintln(tw, "POSITION\tRECORDED\tEFFECTIVE\tTRANSFER\tKIND\tCOUNTER\tDEBIT\tCREDIT\tBALANCE\tREFERENCE\t")
		for _, p := range pages {
			for _, l := range p.GetLines() {
				debit, credit := "", ""
				amount := l.GetAmount()
				if l.GetPending() {
					amount += " (pending)"
				}
				if l.GetDirection() == ledgerv1.Direction_DIRECTION_DEBIT {
					debit = amount
				} else {
					credit = amount
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", l.GetPosition(), stamp(l.GetRecordedAt()), stamp(l.GetEffectiveAt()),
					l.GetTransferId(), l.GetKind(), strings.Join(l.GetCounterAccounts(), ","), debit, credit, l.GetRunningBalance(), l.GetReference())
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "closing balance %s, as of position %d", last.GetClosingBalance(), last.GetPosition())
		if last.GetNextCursor() != "" {
			fmt.Fprint(c.out, "  (more: --all)")
		}
		fmt.Fprintln(c.out)
		return nil
	})
}

func stamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func (c *client) transfersGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID...",
		Short:   "Look up transfers by id: status, postings, holds and reversals",
		Example: "  ledgerctl transfers get t1 h1\n  ledgerctl transfers get t1 -o yaml",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if len(ids) == 0 {
				return usageError{"transfers get takes at least one ID"}
			}
			return c.transfersGet(cmd.Context(), ids)
		},
	}
}

func (c *client) transfersGet(ctx context.Context, ids []string) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.query.GetTransfers(ctx, &ledgerv1.GetTransfersRequest{Ledger: c.ledger, Ids: ids})
		if err != nil {
			return err
		}
		found := map[string]bool{}
		for _, v := range resp.GetTransfers() {
			found[v.GetId()] = true
		}
		if !c.human() {
			err = c.printJSON(resp)
		} else {
			err = c.printTransfers(resp.GetTransfers(), resp.GetPosition())
		}
		if err != nil {
			return err
		}
		// Like balance: an id the transfers projection does not know fails
		// the command, instead of vanishing from an answer that exits 0.
		return missing("transfer", ids, found)
	})
}

func (c *client) transfersListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List transfers, by account, reference, status, asset and amount, times, a page at a time",
		Example: "  ledgerctl transfers list --account alice\n" +
			"  ledgerctl transfers list --asset USD --min-amount 1000.00 --effective-from 2026-11-01T00:00:00Z\n" +
			"  ledgerctl transfers list --status pending --all -o json",
		Args: noArgs("transfers list"),
	}
	fs := cmd.Flags()
	account := fs.String("account", "", "transfers with a posting on this account")
	reference := fs.String("reference", "", "by reference")
	statusName := fs.String("status", "", "posted, pending, pending_posted, voided, expired, reversed, partially_reversed")
	limit := fs.Uint("limit", 100, fmt.Sprintf("transfers per page, at most %d", queries.TransfersPageMax))
	all := fs.Bool("all", false, "follow every page")
	var ranges transferRangeFlags
	ranges.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(transferStatuses(), cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkLimit(*limit, queries.TransfersPageMax); err != nil {
			return err
		}
		req := &ledgerv1.ListTransfersRequest{Ledger: c.ledger, Account: *account, Reference: *reference, Limit: uint32(*limit)}
		if err := ranges.apply(req); err != nil {
			return err
		}
		if *statusName != "" {
			v, ok := ledgerv1.TransferStatus_value["TRANSFER_STATUS_"+strings.ToUpper(*statusName)]
			// UNSPECIFIED is no filter at all, not a status a transfer can have.
			if !ok || v == int32(ledgerv1.TransferStatus_TRANSFER_STATUS_UNSPECIFIED) {
				return usageError{"unknown --status " + *statusName}
			}
			req.Status = ledgerv1.TransferStatus(v)
		}
		return c.transfersList(cmd.Context(), req, *all)
	}
	return cmd
}

// transferStatuses are --status's values, for the completion.
func transferStatuses() []string {
	var out []string
	for v := range len(ledgerv1.TransferStatus_name) {
		if v == int(ledgerv1.TransferStatus_TRANSFER_STATUS_UNSPECIFIED) {
			continue
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(ledgerv1.TransferStatus(v).String(), "TRANSFER_STATUS_")))
	}
	return out
}

func (c *client) transfersList(ctx context.Context, req *ledgerv1.ListTransfersRequest, all bool) error {
	return c.call(ctx, func(ctx context.Context) error {
		var (
			views []*ledgerv1.TransferView
			pos   uint64
		)
		for range pagesMax {
			resp, err := c.query.ListTransfers(ctx, req)
			if err != nil {
				return err
			}
			if !c.human() {
				if err := c.printJSON(resp); err != nil {
					return err
				}
			}
			views, pos = append(views, resp.GetTransfers()...), resp.GetPosition()
			if !all || resp.GetNextCursor() == "" {
				break
			}
			req.Cursor = resp.GetNextCursor()
		}
		if !c.human() {
			return nil
		}
		return c.printTransfers(views, pos)
	})
}

func (c *client) printTransfers(views []*ledgerv1.TransferView, position uint64) error {
	tw := c.tabwriter()
	fmt.Fprintln(tw, "POSITION\tID\tKIND\tSTATUS\tDEBIT\tCREDIT\tAMOUNT\tREMAINING\tREVERSED\tLINKS\t")
	for _, v := range views {
		links := []string{}
		if v.GetPendingId() != "" {
			links = append(links, "pending "+v.GetPendingId())
		}
		if v.GetResolvedBy() != "" {
			links = append(links, "resolved by "+v.GetResolvedBy())
		}
		if v.GetReverses() != "" {
			links = append(links, "reverses "+v.GetReverses())
		}
		if len(v.GetReversedBy()) > 0 {
			links = append(links, "reversed by "+strings.Join(v.GetReversedBy(), ","))
		}
		if v.GetAlert() != "" {
			links = append(links, "held for alert "+v.GetAlert())
		}
		kind := strings.ToLower(strings.TrimPrefix(v.GetKind().String(), "TRANSFER_KIND_"))
		st := strings.ToLower(strings.TrimPrefix(v.GetStatus().String(), "TRANSFER_STATUS_"))
		for i, p := range v.GetPostings() {
			id, k, s, l := "", "", "", ""
			if i == 0 {
				id, k, s, l = v.GetId(), kind, st, strings.Join(links, "; ")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t\n", v.GetPosition(), id, k, s, p.GetDebitAccount(), p.GetCreditAccount(),
				p.GetAmount(), p.GetAsset(), p.GetRemaining(), p.GetReversed(), l)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.out, "as of position %d\n", position)
	return err
}

func (c *client) trialBalanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "trial-balance",
		Short:   "Debits and credits per asset, posted and pending: they balance",
		Example: "  ledgerctl trial-balance\n  ledgerctl trial-balance --as-of 100 -o json",
		Args:    noArgs("trial-balance"),
	}
	asOf := cmd.Flags().Uint64("as-of", 0, "just after this position")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return c.trialBalance(cmd.Context(), *asOf) }
	return cmd
}

func (c *client) trialBalance(ctx context.Context, asOf uint64) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.query.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{Ledger: c.ledger, AsOfPosition: asOf})
		if err != nil {
			return err
		}
		if !c.human() {
			return c.printJSON(resp)
		}
		tw := c.tabwriter()
		fmt.Fprintln(tw, "ASSET\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tACCOUNTS\tCLOSED\tBALANCED\t")
		for _, l := range resp.GetLines() {
			balanced := l.GetDebitsPosted() == l.GetCreditsPosted() && l.GetDebitsPending() == l.GetCreditsPending()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%v\t\n", l.GetAsset(), l.GetDebitsPosted(), l.GetCreditsPosted(),
				l.GetDebitsPending(), l.GetCreditsPending(), l.GetAccounts(), l.GetAccountsClosed(), balanced)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
		return err
	})
}

func (c *client) projectionsStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Each projection's position, the head and the lag",
		Example: "  ledgerctl projections status\n  ledgerctl projections status -o json",
		Args:    noArgs("projections status"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.projectionsStatus(cmd.Context()) },
	}
}

// projectionState is a projection's state for the table: its enum name
// without the prefix.
func projectionState(s ledgerv1.ProjectionState) string {
	return strings.TrimPrefix(s.String(), "PROJECTION_STATE_")
}

func (c *client) projectionsStatus(ctx context.Context) error {
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := c.query.GetProjectionStatus(ctx, &ledgerv1.GetProjectionStatusRequest{Ledger: c.ledger})
		if err != nil {
			return err
		}
		if !c.human() {
			return c.printJSON(resp)
		}
		tw := c.tabwriter()
		fmt.Fprintln(tw, "LEDGER\tPROJECTION\tVERSION\tPOSITION\tHEAD\tLAG\tLAG SECONDS\tUPDATED\tSTATE\t")
		var stopped []*ledgerv1.ProjectionStatus
		for _, p := range resp.GetProjections() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.3f\t%s\t%s\t\n", p.GetLedger(), p.GetName(), p.GetVersion(), p.GetPosition(),
				p.GetHead(), p.GetLagPositions(), p.GetLagSeconds(), stamp(p.GetUpdatedAt()), projectionState(p.GetState()))
			if p.GetReason() != "" {
				stopped = append(stopped, p)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		// What stops a projection is too long for a column.
		for _, p := range stopped {
			fmt.Fprintf(c.out, "%s/%s stopped: %s\n", p.GetLedger(), p.GetName(), p.GetReason())
		}
		if len(stopped) > 0 {
			fmt.Fprintln(c.out, "repair: ledgerctl admin repair-stream --ledger LEDGER (docs/operations.md, \"Integrity\")")
		}
		// An importing or archived ledger says so: its head moves only by
		// the import, or not at all.
		if c.ledger == "" {
			return nil
		}
		l, err := ledgerv1.NewAdminServiceClient(c.conn).GetLedger(ctx, &ledgerv1.GetLedgerRequest{Ledger: c.ledger})
		if err == nil && l.GetLedger().GetStatus() != ledgerv1.LedgerStatus_LEDGER_STATUS_ACTIVE {
			fmt.Fprintf(c.out, "ledger %s\n", ledgerLine(l.GetLedger()))
		}
		return nil
	})
}
