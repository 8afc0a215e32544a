package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
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
	"github.com/ledgerd/ledger/eventstore"
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

// exportFlushEvery bounds the events buffered before a write.
const exportFlushEvery = 1000

// logExport writes the log as JSON Lines, one event with its hashes per
// line (eventstore.Record.AppendJSON), streamed. With --out and --from P
// after 1 it resumes an export: the file must end with the event at P-1,
// whose hash the event at P must link to, and the new lines are appended.
// Without --from, --out FILE is written anew.
func (c *client) logExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the log as JSON Lines, one event with its hashes per line",
		Long: `export writes the log as JSON Lines, one event with its hashes per line, to
standard output or --out FILE (owner-readable only). With --out and --from P after 1 it
resumes an export that ends at P-1, checking that the new events link to the file's last.
The file ends with a trailer line (its events, first and last positions, last hash, and
the signed anchors within them), which import and audit verify --in require: a cut
export is refused.

Without --out the events themselves are the output: -o table or json (the same JSON Lines);
-o yaml applies with --out, to the summary.`,
		Example: "  ledgerctl log export --out ledger.jsonl\n" +
			"  ledgerctl log export --from 10001 --out ledger.jsonl   (resume after position 10000)\n" +
			"  ledgerctl log export --to 500 | gzip > first-500.jsonl.gz",
		Args: noArgs("log export"),
	}
	fs := cmd.Flags()
	from := fs.Uint64("from", 0, "first position (with --out: resume the file, which ends at --from - 1)")
	to := fs.Uint64("to", 0, "last position (default: the head when the export starts)")
	out := fs.String("out", "", "file to write (default: standard output)")
	_ = cmd.MarkFlagFilename("out", "jsonl")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return c.logExport(cmd.Context(), *from, *to, *out) }
	return cmd
}

func (c *client) logExport(ctx context.Context, from, to uint64, out string) error {
	switch {
	case to != 0 && from > to:
		return usageError{"--from is after --to"}
	case out == "" && c.output == outputYAML:
		return usageError{"log export writes JSON Lines to standard output: -o yaml goes with --out"}
	}
	start := max(from, 1)
	if err := c.connect(); err != nil {
		return err
	}
	w, resumed, closeOut, err := openExport(c.out, out, start)
	if err != nil {
		return err
	}
	n, last, err := c.export(ctx, w, start, to, resumed)
	// Not joined: the call's status must stay what ledgerctl prints.
	if cerr := closeOut(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	switch {
	case out == "":
		return nil
	case !c.human():
		sum := exportSummary{File: out, Events: n, From: start}
		if n > 0 {
			sum.To, sum.LastHash = last.Position, hex.EncodeToString(last.Hash[:])
		}
		return c.printAny(sum)
	case n == 0:
		_, err = fmt.Fprintf(c.out, "nothing to export from position %d\n", start)
		return err
	}
	_, err = fmt.Fprintf(c.out, "exported %d events, positions %d..%d, to %s; last hash %s\n", n, start, last.Position,
		out, hex.EncodeToString(last.Hash[:]))
	return err
}

// exportSummary is what log export --out wrote, for -o json and yaml.
type exportSummary struct {
	File     string `json:"file"`
	Events   uint64 `json:"events"`
	From     uint64 `json:"from"`
	To       uint64 `json:"to,omitempty"`
	LastHash string `json:"last_hash,omitempty"`
}

// openExport opens the export's destination. Resuming (start after 1, an
// existing file) it returns the file's events counted (their trailer goes on
// counting them) and the hash of its last event, which the first exported
// event must link to; a line cut short by an interrupted export, or the
// trailer of a finished one, is dropped first: the trailer is written anew
// at the end.
func openExport(stdout io.Writer, path string, start uint64) (w *bufio.Writer, resume *exportResume, closeOut func(ok bool) error, err error) {
	if path == "" {
		w = bufio.NewWriterSize(stdout, 1<<16)
		return w, nil, func(bool) error { return w.Flush() }, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if start > 1 {
		if _, statErr := os.Stat(path); statErr == nil {
			h, size, err := exportTail(path, start)
			if err != nil {
				return nil, nil, nil, err
			}
			if err := os.Truncate(path, size); err != nil {
				return nil, nil, nil, err
			}
			tc, err := exportCount(path)
			if err != nil {
				return nil, nil, nil, err
			}
			resume, flags = &exportResume{hash: h, count: tc}, os.O_WRONLY|os.O_APPEND
		}
	}
	// An export is the whole history of a ledger (accounts, amounts,
	// metadata): readable by its owner only, like a key file. A file that
	// existed with a looser mode is tightened too.
	f, err := os.OpenFile(path, flags, exportFileMode)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := f.Chmod(exportFileMode); err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	w = bufio.NewWriterSize(f, 1<<16)
	return w, resume, func(ok bool) error {
		err := w.Flush()
		if ok && err == nil {
			err = f.Sync() // an export is evidence: on disk before we say so
		}
		return errors.Join(err, f.Close())
	}, nil
}

// exportFileMode is the mode of a file log export writes: owner only.
const exportFileMode = 0o600

// exportTailMax bounds how much of a file's end is read to find its last
// complete line.
const exportTailMax = 8 << 20

// exportTail returns the hash of the last complete line of an export, which
// must be the event at start-1, and the size of the file up to that line.
func exportTail(path string, start uint64) (eventstore.Hash, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return eventstore.Hash{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return eventstore.Hash{}, 0, err
	}
	off := max(st.Size()-exportTailMax, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return eventstore.Hash{}, 0, err
	}
	end := bytes.LastIndexByte(buf, '\n') // past it: a line cut short
	lineStart := bytes.LastIndexByte(buf[:max(end, 0)], '\n') + 1
	if end >= 0 && audit.IsTrailer(buf[lineStart:end]) {
		end = lineStart - 1 // a finished export: its trailer goes
		lineStart = bytes.LastIndexByte(buf[:max(end, 0)], '\n') + 1
	}
	if end < 0 {
		return eventstore.Hash{}, 0, usageError{fmt.Sprintf("--out %s has no complete line to resume after", path)}
	}
	r, err := eventstore.ParseRecordJSON(buf[lineStart:end])
	if err != nil {
		return eventstore.Hash{}, 0, fmt.Errorf("--out %s: last line: %w", path, err)
	}
	if r.Position != start-1 {
		return eventstore.Hash{}, 0, usageError{fmt.Sprintf("--out %s ends with position %d: resume with --from %d",
			path, r.Position, r.Position+1)}
	}
	return r.Hash, off + int64(end) + 1, nil
}

// exportResume is what a resumed export continues: the events of the file
// so far and the last one's hash.
type exportResume struct {
	hash  eventstore.Hash
	count audit.TrailerCheck
}

// exportCount counts the events of an export cut at a line boundary (its
// trailer dropped), for the trailer that will end it.
func exportCount(path string) (audit.TrailerCheck, error) {
	var tc audit.TrailerCheck
	f, err := os.Open(path)
	if err != nil {
		return tc, err
	}
	defer f.Close()
	br := audit.ImportNewLineReader(f)
	for line := 1; ; line++ {
		b, _, err := audit.ImportReadLine(br)
		if errors.Is(err, io.EOF) {
			return tc, nil
		}
		if err != nil {
			return tc, fmt.Errorf("--out %s line %d: %w", path, line, err)
		}
		if audit.ImportBlankLine(b) {
			continue
		}
		r, err := eventstore.ParseRecordJSON(b)
		if err != nil {
			return tc, fmt.Errorf("--out %s line %d: %w", path, line, err)
		}
		if err := tc.Event(&r); err != nil {
			return tc, err
		}
	}
}

// exported is the last event written.
type exported struct {
	Position uint64
	Hash     eventstore.Hash
}

// export streams ReadEvents into w, then the trailer (audit.Trailer) with
// the anchors ledgerd signed within the file's positions. The events are
// written as the log holds them, altered or not: verifying is audit
// verify's job. Only a resumed export checks that its first event links to
// the file's last.
func (c *client) export(ctx context.Context, w *bufio.Writer, from, to uint64, resume *exportResume) (uint64, exported, error) {
	l := &servicelog.Log{Name: c.ledger, Audit: c.audit, Query: c.query}
	// The progress counts to the last position asked for, or the head.
	total := to
	if total == 0 {
		head, err := l.Head(ctx)
		if err != nil {
			return 0, exported{}, err
		}
		total = head
	}
	bar := c.newProgress("events", c.errOut)
	defer bar.finish()
	var (
		n    uint64
		last exported
		buf  []byte
		tc   audit.TrailerCheck
	)
	if resume != nil {
		tc = resume.count
	}
	bar.update("export", 0, total-min(total, from-1))
	err := l.Read(ctx, from, to, func(recs []eventstore.Record) error {
		for i := range recs {
			r := &recs[i]
			if n == 0 && resume != nil && r.PrevHash != resume.hash {
				return fmt.Errorf("event %d does not link to the file's last event (prev_hash %x, file's last hash %x): "+
					"the file is not an export of this log", r.Position, r.PrevHash[:], resume.hash[:])
			}
			if err := tc.Event(r); err != nil {
				return err
			}
			buf = append(r.AppendJSON(buf[:0]), '\n')
			if _, err := w.Write(buf); err != nil {
				return err
			}
			n++
			last = exported{Position: r.Position, Hash: r.Hash}
			if n%exportFlushEvery == 0 {
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
		bar.update("export", n, total-min(total, from-1))
		return nil
	})
	if err != nil {
		return n, last, err
	}
	t := tc.Written(c.ledger)
	if t.Anchors, err = c.anchorsWithin(ctx, t.First, t.Last); err != nil {
		return n, last, err
	}
	if buf, err = audit.AppendTrailer(buf[:0], &t); err != nil {
		return n, last, err
	}
	_, err = w.Write(buf)
	return n, last, err
}

// tabwriterLeft aligns a report's keys and values to the left.
func tabwriterLeft(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
