package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/queries"
)

// Page sizes of reconcile report: ledgerd's bounds with --all, its default
// without.
const (
	reconPageItems      = 100
	reconPageItemsAll   = queries.ReconPageMax
	reconPageMatchesAll = queries.ReconMatchesPageMax
)

// reconcileReport prints an account's reconciliation for a period: the
// balances and the difference explained, then the unmatched lines and
// movements, and with --matches the matches.
func (c *client) reconcileReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report --account A",
		Short: "An account's reconciliation: balances, the difference explained, what is unmatched",
		Example: "  ledgerctl reconcile report --account bank:acme\n" +
			"  ledgerctl reconcile report --account bank:acme --from 2026-03-01 --to 2026-03-31 --matches --all -o json",
		Args: noArgs("reconcile report"),
	}
	fs := cmd.Flags()
	account := fs.String("account", "", "the account")
	from := fs.String("from", "", "first value date, YYYY-MM-DD")
	to := fs.String("to", "", "last value date, YYYY-MM-DD")
	all := fs.Bool("all", false, "follow every page of the listings")
	matches := fs.Bool("matches", false, "list the matches too")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	required(cmd, "account")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkDates(*from, *to); err != nil {
			return err
		}
		return c.reconcileReport(cmd.Context(), *account, *from, *to, *all, *matches, *minPos)
	}
	return cmd
}

func (c *client) reconcileReport(ctx context.Context, account, from, to string, all, matches bool, minPos uint64) error {
	return c.call(ctx, func(ctx context.Context) error {
		rc := ledgerv1.NewReconciliationServiceClient(c.conn)
		sum, err := rc.GetReconciliation(ctx, &ledgerv1.GetReconciliationRequest{Ledger: c.ledger, Account: account,
			FromDate: from, ToDate: to, MinPosition: minPos})
		if err != nil {
			return err
		}
		list := func(side ledgerv1.UnmatchedSide) (*ledgerv1.ListUnmatchedResponse, error) {
			size := uint32(reconPageItems)
			if all {
				size = reconPageItemsAll
				if side == ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MATCHES {
					size = reconPageMatchesAll
				}
			}
			// At least the summary's position: the listings are no older.
			return listUnmatched(ctx, rc, &ledgerv1.ListUnmatchedRequest{Ledger: c.ledger, Account: account, Side: side,
				FromDate: from, ToDate: to, PageSize: size, MinPosition: sum.GetPosition()}, all)
		}
		r := reconReport{Reconciliation: sum}
		if r.UnmatchedLines, err = list(ledgerv1.UnmatchedSide_UNMATCHED_SIDE_LINES); err != nil {
			return err
		}
		if r.UnmatchedMovements, err = list(ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MOVEMENTS); err != nil {
			return err
		}
		if matches {
			if r.Matches, err = list(ledgerv1.UnmatchedSide_UNMATCHED_SIDE_MATCHES); err != nil {
				return err
			}
		}
		if !c.human() {
			return c.printReconJSON(&r)
		}
		return c.printRecon(&r, from, to)
	})
}

// checkDates checks --from and --to.
//
// Errors: usageError.
func checkDates(from, to string) error {
	for _, d := range []struct{ flag, v string }{{"--from", from}, {"--to", to}} {
		if d.v == "" {
			continue
		}
		if _, err := domain.ParseValueDate(d.v); err != nil {
			return usageError{fmt.Sprintf("%s %q is not a YYYY-MM-DD date", d.flag, d.v)}
		}
	}
	if from != "" && to != "" && from > to {
		return usageError{"--from is after --to"}
	}
	return nil
}

// listUnmatched reads a listing, one page or with all every page (up to
// pagesMax), into one response: its next_page_token is the last page's.
func listUnmatched(ctx context.Context, rc ledgerv1.ReconciliationServiceClient, req *ledgerv1.ListUnmatchedRequest,
	all bool) (*ledgerv1.ListUnmatchedResponse, error) {
	out := &ledgerv1.ListUnmatchedResponse{}
	for range pagesMax {
		resp, err := rc.ListUnmatched(ctx, req)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, resp.GetItems()...)
		out.Matches = append(out.Matches, resp.GetMatches()...)
		out.NextPageToken, out.Position = resp.GetNextPageToken(), resp.GetPosition()
		if !all || resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}

// reconReport is reconcile report's answer.
type reconReport struct {
	Reconciliation     *ledgerv1.GetReconciliationResponse
	UnmatchedLines     *ledgerv1.ListUnmatchedResponse
	UnmatchedMovements *ledgerv1.ListUnmatchedResponse
	Matches            *ledgerv1.ListUnmatchedResponse // nil without --matches
}

// printReconJSON prints the report as one JSON object of the responses,
// each as protojson writes it.
func (c *client) printReconJSON(r *reconReport) error {
	obj := map[string]json.RawMessage{}
	for name, m := range map[string]proto.Message{"reconciliation": r.Reconciliation,
		"unmatched_lines": r.UnmatchedLines, "unmatched_movements": r.UnmatchedMovements, "matches": r.Matches} {
		if m == nil || m.ProtoReflect() == nil || !m.ProtoReflect().IsValid() {
			continue
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		obj[name] = b
	}
	return c.printAny(obj)
}

// printRecon prints the summary as keys and values, then the listings.
func (c *client) printRecon(r *reconReport, from, to string) error {
	s := r.Reconciliation
	period := "every value date"
	if from != "" || to != "" {
		period = fmt.Sprintf("value dates %s..%s", from, to)
	}
	tw := tabwriterLeft(c.out)
	fmt.Fprintf(tw, "account\t%s (%s), %s\n", s.GetAccount(), s.GetAsset(), period)
	fmt.Fprintf(tw, "external balance\t%s\n", s.GetExternalBalance())
	fmt.Fprintf(tw, "ledger balance\t%s\n", s.GetLedgerBalance())
	fmt.Fprintf(tw, "difference\t%s = unmatched lines %s - unmatched movements %s + matched difference %s\n",
		s.GetDifference(), s.GetUnmatchedLinesToEndSum(), s.GetUnmatchedMovementsToEndSum(), s.GetMatchedDifference())
	fmt.Fprintf(tw, "matches\t%d (%s, %s)%s\n", s.GetMatches(), plural(int(s.GetMatchedLines()), "line"),
		plural(int(s.GetMatchedMovements()), "movement"), byRule(s.GetMatchesByRule()))
	fmt.Fprintf(tw, "unmatched lines\t%d, sum %s\n", s.GetUnmatchedLines(), s.GetUnmatchedLinesSum())
	fmt.Fprintf(tw, "unmatched movements\t%d, sum %s\n", s.GetUnmatchedMovements(), s.GetUnmatchedMovementsSum())
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := c.printItems("unmatched lines", r.UnmatchedLines); err != nil {
		return err
	}
	if err := c.printItems("unmatched movements", r.UnmatchedMovements); err != nil {
		return err
	}
	if r.Matches != nil {
		if err := c.printMatches(r.Matches); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(c.out, "\nas of position %d\n", s.GetPosition())
	return err
}

// byRule lists the matches per rule, in a fixed order.
func byRule(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	rules := make([]string, 0, len(m))
	for r := range m {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = fmt.Sprintf("%s %d", strings.ToUpper(r), m[r])
	}
	return ": " + strings.Join(parts, ", ")
}

// more notes a listing cut short.
func more(l *ledgerv1.ListUnmatchedResponse) string {
	if l.GetNextPageToken() != "" {
		return "  (more: --all)"
	}
	return ""
}

// printItems prints unmatched lines or movements, each a row.
func (c *client) printItems(title string, l *ledgerv1.ListUnmatchedResponse) error {
	fmt.Fprintf(c.out, "\n%s: %d listed%s\n", title, len(l.GetItems()), more(l))
	if len(l.GetItems()) == 0 {
		return nil
	}
	tw := c.tabwriter()
	fmt.Fprintln(tw, "ITEM\tDATE\tAMOUNT\tREFERENCE\tDESCRIPTION\tMANUAL ONLY\t")
	for _, it := range l.GetItems() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", itemName(it), it.GetDate(), it.GetAmount(), it.GetReference(),
			truncateText(it.GetDescription()), yes(it.GetManualOnly()))
	}
	return tw.Flush()
}

// itemName names an item as match and unmatch take it: SOURCE/EXTERNAL_ID
// or TRANSFER_ID#POSTING.
func itemName(it *ledgerv1.ReconItem) string {
	if it.GetKind() == "line" {
		return it.GetSource() + "/" + it.GetExternalId()
	}
	return fmt.Sprintf("%s#%d", it.GetTransferId(), it.GetPostingIndex())
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

// printMatches prints each match, its items beneath it.
func (c *client) printMatches(l *ledgerv1.ListUnmatchedResponse) error {
	fmt.Fprintf(c.out, "\nmatches: %d listed%s\n", len(l.GetMatches()), more(l))
	if len(l.GetMatches()) == 0 {
		return nil
	}
	tw := c.tabwriter()
	fmt.Fprintln(tw, "MATCH\tRULE\tDIFFERENCE\tITEM\tDATE\tAMOUNT\tREASON\t")
	for _, m := range l.GetMatches() {
		for i, it := range m.GetItems() {
			id, rule, diff, reason := "", "", "", ""
			if i == 0 {
				id, rule, diff, reason = m.GetId(), m.GetRule(), m.GetDifference(), truncateText(m.GetReason())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", id, rule, diff, itemName(it), it.GetDate(), it.GetAmount(), reason)
		}
	}
	return tw.Flush()
}

// journal prints the control totals: per asset and day the posted postings
// and their sum, and the totals per asset that tie to the trial balance.
func (c *client) journalCmd() *cobra.Command {
	req := &ledgerv1.GetDailyJournalRequest{}
	cmd := &cobra.Command{
		Use:     "journal",
		Short:   "Control totals: postings and sums per asset and day; totals tie to the trial balance",
		Example: "  ledgerctl journal --asset USD --from 2026-03-01 --to 2026-03-31",
		Args:    noArgs("journal"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.journal(cmd.Context(), req) },
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Asset, "asset", "", "one asset (default: every asset)")
	fs.StringVar(&req.FromDate, "from", "", "first effective date, YYYY-MM-DD")
	fs.StringVar(&req.ToDate, "to", "", "last effective date, YYYY-MM-DD")
	fs.Uint64Var(&req.MinPosition, "min-position", 0, "wait until the projection has reached this position")
	return cmd
}

func (c *client) journal(ctx context.Context, req *ledgerv1.GetDailyJournalRequest) error {
	if err := checkDates(req.FromDate, req.ToDate); err != nil {
		return err
	}
	req.Ledger = c.ledger
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewReconciliationServiceClient(c.conn).GetDailyJournal(ctx, req)
		if err != nil {
			return err
		}
		if !c.human() {
			return c.printJSON(resp)
		}
		tw := c.tabwriter()
		fmt.Fprintln(tw, "DATE\tASSET\tPOSTINGS\tAMOUNT\t")
		for _, l := range resp.GetLines() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t\n", l.GetDate(), l.GetAsset(), l.GetPostings(), l.GetAmount())
		}
		for _, l := range resp.GetTotals() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t\n", "total", l.GetAsset(), l.GetPostings(), l.GetAmount())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
		return err
	})
}

// truncateText shortens what a table quotes.
func truncateText(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
