package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/audit/servicelog"
)

// The audit verbs stream the whole log: they are bounded by the caller's
// context (Ctrl-C), not by callTimeout; each unary call inside is bounded
// by the audit package.

// errDiverged fails audit verify after the report is printed: exit code 1.
var errDiverged = errors.New("verification failed")

// auditLog is the log an audit verb reads: ledgerd's, or an export.
func (c *client) auditLog(in string) (audit.Log, error) {
	if in != "" {
		if _, err := os.Stat(in); err != nil {
			return nil, usageError{fmt.Sprintf("--in: %v", err)}
		}
		return &filelog.Log{Path: in}, nil
	}
	if err := c.connect(); err != nil {
		return nil, err
	}
	return &servicelog.Log{Name: c.ledger, Audit: c.audit, Query: c.query}, nil
}

// auditVerify checks the log (gapless, every hash, every link), replays it
// through the domain and compares the projections with the replay. With
// --from after 1 only the chain is checked, anchored on that event's stored
// prev_hash (confirmed by a signed anchor at --from - 1 when --anchors holds
// one): balances need the log from position 1. With --in it verifies an
// export, the log alone.
func (c *client) auditVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the log (gapless, every hash and link), replay it, compare the projections (exit 0: they agree)",
		Example: "  ledgerctl audit verify\n" +
			"  ledgerctl audit verify --from 1000 --to 2000      (the chain only, anchored at 1000)\n" +
			"  ledgerctl audit verify --in ledger.jsonl -o json  (an export, the log alone)\n" +
			"  ledgerctl audit verify --anchors var/anchors --anchor-pubkey var/anchor.pub  (and every signed anchor)",
		Args: noArgs("audit verify"),
	}
	fs := cmd.Flags()
	from := fs.Uint64("from", 0, "first position (after 1: the chain only)")
	to := fs.Uint64("to", 0, "last position (default: the head)")
	in := fs.String("in", "", "verify an export (JSON Lines) instead of ledgerd's log")
	_ = cmd.MarkFlagFilename("in", "jsonl")
	anchors := fs.String("anchors", "", "signed anchors (a JSON Lines file, or a directory of them) the log must agree with; "+
		"with --in, default: the export's trailer's")
	pubkeys := fs.StringSlice("anchor-pubkey", nil, "trusted public key file (PEM) or directory of them (repeatable: rotated keys)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		as, ring, err := verifyAnchors(*anchors, *pubkeys, *in)
		if err != nil {
			return err
		}
		return c.auditVerify(cmd.Context(), audit.Options{From: *from, To: *to, Anchors: as, Keyring: ring}, *in)
	}
	return cmd
}

func (c *client) auditVerify(ctx context.Context, opts audit.Options, in string) error {
	if opts.To != 0 && opts.From > opts.To {
		return usageError{"--from is after --to"}
	}
	l, err := c.auditLog(in)
	if err != nil {
		return err
	}
	var proj audit.Projections
	if in == "" {
		proj, opts.Alerts, opts.Lines = c.query, c.mon, c.audit
	}
	bar := c.newProgress("", c.errOut)
	opts.Progress = func(p audit.Progress) { bar.update(p.Phase, p.Done, p.Total) }
	rep, err := audit.Verify(ctx, l, proj, opts)
	bar.finish()
	if errors.Is(err, audit.ErrBeyondHead) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	if !c.human() {
		if err := c.printAny(rep); err != nil {
			return err
		}
	} else if err := c.printReport(rep); err != nil {
		return err
	}
	if !rep.Clean() {
		return fmt.Errorf("%w: %s", errDiverged, rep.Divergence)
	}
	return nil
}

func (c *client) printReport(r *audit.Report) error {
	tw := tabwriterLeft(c.out)
	fmt.Fprintf(tw, "ledger\t%s\n", r.Ledger)
	head := "the end of the file"
	if r.Head != 0 {
		head = "head " + strconv.FormatUint(r.Head, 10)
	}
	fmt.Fprintf(tw, "log\tpositions %d..%d (%s): %d events, gapless, every hash and link checked\n", r.From, r.To, head, r.Events)
	switch {
	case r.Anchor != "" && r.AnchorSigned:
		fmt.Fprintf(tw, "anchor\t%s (the prev_hash of position %d: the hash signed at %d)\n", r.Anchor, r.From, r.From-1)
	case r.Anchor != "":
		fmt.Fprintf(tw, "anchor\t%s (the prev_hash of position %d: the last hash of a verification up to %d)\n",
			r.Anchor, r.From, r.From-1)
	}
	if r.LastHash != "" {
		fmt.Fprintf(tw, "last hash\t%s\n", r.LastHash)
	}
	if r.Anchors > 0 {
		fmt.Fprintf(tw, "anchors\t%d signed anchors: each signature and the hash at its position checked\n", r.Anchors)
	}
	if r.Replayed {
		fmt.Fprintf(tw, "replay\t%d accounts, %d assets: every invariant held\n", r.Accounts, r.Assets)
	}
	if r.Replayed && r.StatementLines > 0 {
		accounts := ""
		if r.AccountsCompared {
			accounts = "accounts, "
		}
		fmt.Fprintf(tw, "projections\tbalances, %strial balance, %d statement lines and %d transfers as of position %d\n",
			accounts, r.StatementLines, r.Transfers, r.To)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	fmt.Fprintf(tw, "elapsed\t%s\n", r.Elapsed.Round(time.Millisecond))
	if d := r.Divergence; d != nil {
		fmt.Fprintf(tw, "result\tDIVERGENCE\n")
		fmt.Fprintf(tw, "kind\t%s\n", d.Kind)
		fmt.Fprintf(tw, "position\t%d\n", d.Position)
		for _, kv := range [][2]string{{"account", d.Account}, {"asset", d.Asset}, {"field", d.Field}} {
			if kv[1] != "" {
				fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
			}
		}
		fmt.Fprintf(tw, "expected\t%s\nfound\t%s\n", d.Expected, d.Found)
		if d.Detail != "" {
			fmt.Fprintf(tw, "detail\t%s\n", d.Detail)
		}
	} else {
		fmt.Fprintf(tw, "result\tclean\n")
	}
	return tw.Flush()
}

// auditReplay prints every account's balances and the trial balance at a
// position or a time, from the log alone.
func (c *client) auditReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay --at POSITION|TIME",
		Short: "Balances and trial balance at a position or a time, from the log alone",
		Example: "  ledgerctl audit replay --at 1200\n" +
			"  ledgerctl audit replay --at 2026-11-30T23:59:59Z -o json\n" +
			"  ledgerctl audit replay --at 500 --in ledger.jsonl",
		Args: noArgs("audit replay"),
	}
	atText := cmd.Flags().String("at", "", "a position, or an RFC 3339 time (the last event recorded at or before it)")
	in := cmd.Flags().String("in", "", "replay an export (JSON Lines) instead of ledgerd's log")
	_ = cmd.MarkFlagFilename("in", "jsonl")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return c.auditReplay(cmd.Context(), *atText, *in) }
	return cmd
}

func (c *client) auditReplay(ctx context.Context, atText, in string) error {
	at, err := parseAt(atText)
	if err != nil {
		return err
	}
	l, err := c.auditLog(in)
	if err != nil {
		return err
	}
	// The whole log up to the point is read: the point, or the head, is
	// the progress's total (0, unknown, for a file or a time).
	total := at.Position
	if total == 0 && at.Time.IsZero() {
		if total, err = l.Head(ctx); err != nil {
			return err
		}
	}
	bar := c.newProgress("events", c.errOut)
	snap, err := audit.Replay(ctx, &progressLog{Log: l, p: bar, phase: "replay", total: total}, at)
	bar.finish()
	if errors.Is(err, audit.ErrBeyondHead) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	if !c.human() {
		return c.printAny(snap)
	}
	return c.printSnapshot(snap)
}

// parseAt reads --at: digits are a position, anything else an RFC 3339 time.
func parseAt(s string) (audit.At, error) {
	if s == "" {
		return audit.At{}, usageError{"audit replay needs --at POSITION or --at TIME (RFC 3339)"}
	}
	if p, err := strconv.ParseUint(s, 10, 64); err == nil {
		if p == 0 {
			return audit.At{}, usageError{"--at: positions start at 1"}
		}
		return audit.At{Position: p}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return audit.At{}, usageError{fmt.Sprintf("--at %q is neither a position nor an RFC 3339 time", s)}
	}
	return audit.At{Time: t}, nil
}

func (c *client) printSnapshot(s *audit.Snapshot) error {
	at := "before the first event"
	if s.Position != 0 {
		at = fmt.Sprintf("position %d, recorded %s, hash %s", s.Position, s.RecordedAt.Format(time.RFC3339Nano), s.Hash)
	}
	fmt.Fprintf(c.out, "ledger %s replayed from its log to %s\n\n", s.Ledger, at)
	tw := c.tabwriter()
	fmt.Fprintln(tw, "ACCOUNT\tASSET\tBALANCE\tAVAILABLE\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tPOSITION\tCLOSED\t")
	for _, b := range s.Balances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%v\t\n", b.Account, b.Asset, b.Balance, b.Available,
			b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending, b.Position, b.Closed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	tw = c.tabwriter()
	fmt.Fprintln(tw, "ASSET\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tACCOUNTS\tCLOSED\tBALANCED\t")
	for _, l := range s.TrialBalance {
		balanced := l.DebitsPosted == l.CreditsPosted && l.DebitsPending == l.CreditsPending
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%v\t\n", l.Asset, l.DebitsPosted, l.CreditsPosted,
			l.DebitsPending, l.CreditsPending, l.Accounts, l.AccountsClosed, balanced)
	}
	return tw.Flush()
}

// tabwriterLeft aligns a report's keys and values to the left.
func tabwriterLeft(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
