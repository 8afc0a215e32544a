package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

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

func (c *client) checkOutput() error {
	if c.output != "table" && c.output != "json" {
		return usageError{"-o is table or json"}
	}
	return nil
}

// auditVerify checks the log (gapless, every hash, every link), replays it
// through the domain and compares the projections with the replay. With
// --from after 1 only the chain is checked, anchored on that event's stored
// prev_hash: balances need the log from position 1. With --in it verifies an
// export, the log alone.
func auditVerify(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	from := fs.Uint64("from", 0, "first position (after 1: the chain only)")
	to := fs.Uint64("to", 0, "last position (default: the head)")
	in := fs.String("in", "", "verify an export (JSON Lines) instead of ledgerd's log")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) != 0:
		return usageError{"audit verify takes only flags"}
	case *to != 0 && *from > *to:
		return usageError{"--from is after --to"}
	}
	if err := c.checkOutput(); err != nil {
		return err
	}
	l, err := c.auditLog(*in)
	if err != nil {
		return err
	}
	var proj audit.Projections
	if *in == "" {
		proj = c.query
	}
	bar := newProgressBar()
	rep, err := audit.Verify(ctx, l, proj, audit.Options{From: *from, To: *to, Progress: bar.show})
	bar.done()
	if errors.Is(err, audit.ErrBeyondHead) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	if c.output == "json" {
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

// printAny prints v as indented JSON, for -o json.
func (c *client) printAny(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

func (c *client) printReport(r *audit.Report) error {
	tw := tabwriterLeft(c.out)
	fmt.Fprintf(tw, "ledger\t%s\n", r.Ledger)
	head := "the end of the file"
	if r.Head != 0 {
		head = "head " + strconv.FormatUint(r.Head, 10)
	}
	fmt.Fprintf(tw, "log\tpositions %d..%d (%s): %d events, gapless, every hash and link checked\n", r.From, r.To, head, r.Events)
	if r.Anchor != "" {
		fmt.Fprintf(tw, "anchor\t%s (the prev_hash of position %d: the last hash of a verification up to %d)\n",
			r.Anchor, r.From, r.From-1)
	}
	if r.LastHash != "" {
		fmt.Fprintf(tw, "last hash\t%s\n", r.LastHash)
	}
	if r.Replayed {
		fmt.Fprintf(tw, "replay\t%d accounts, %d assets: every invariant held\n", r.Accounts, r.Assets)
	}
	if r.Replayed && r.StatementLines > 0 {
		fmt.Fprintf(tw, "projections\tbalances, trial balance and %d statement lines as of position %d\n", r.StatementLines, r.To)
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
func auditReplay(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("audit replay", flag.ContinueOnError)
	atText := fs.String("at", "", "a position, or an RFC 3339 time (the last event recorded at or before it)")
	in := fs.String("in", "", "replay an export (JSON Lines) instead of ledgerd's log")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageError{"audit replay takes only flags"}
	}
	at, err := parseAt(*atText)
	if err != nil {
		return err
	}
	if err := c.checkOutput(); err != nil {
		return err
	}
	l, err := c.auditLog(*in)
	if err != nil {
		return err
	}
	snap, err := audit.Replay(ctx, l, at)
	if errors.Is(err, audit.ErrBeyondHead) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	if c.output == "json" {
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
	tw := c.table()
	fmt.Fprintln(tw, "ACCOUNT\tASSET\tBALANCE\tAVAILABLE\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tPOSITION\tCLOSED\t")
	for _, b := range s.Balances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%v\t\n", b.Account, b.Asset, b.Balance, b.Available,
			b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending, b.Position, b.Closed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	tw = c.table()
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
func logExport(ctx context.Context, c *client, args []string) error {
	fs := flag.NewFlagSet("log export", flag.ContinueOnError)
	from := fs.Uint64("from", 0, "first position (with --out: resume the file, which ends at --from - 1)")
	to := fs.Uint64("to", 0, "last position (default: the head when the export starts)")
	out := fs.String("out", "", "file to write (default: standard output)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) != 0:
		return usageError{"log export takes only flags"}
	case *to != 0 && *from > *to:
		return usageError{"--from is after --to"}
	}
	start := max(*from, 1)
	w, resumeHash, closeOut, err := openExport(c.out, *out, start)
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		_ = closeOut(false) // the connection error says more
		return err
	}
	n, last, err := c.export(ctx, w, start, *to, resumeHash)
	// Not joined: the call's status must stay what ledgerctl prints.
	if cerr := closeOut(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if *out != "" {
		if n == 0 {
			_, err = fmt.Fprintf(c.out, "nothing to export from position %d\n", start)
			return err
		}
		_, err = fmt.Fprintf(c.out, "exported %d events, positions %d..%d, to %s; last hash %s\n", n, start, last.Position,
			*out, hex.EncodeToString(last.Hash[:]))
	}
	return err
}

// openExport opens the export's destination. Resuming (start after 1, an
// existing file) it returns the hash of the file's last event, which the
// first exported event must link to; a line cut short by an interrupted
// export is dropped first.
func openExport(stdout io.Writer, path string, start uint64) (w *bufio.Writer, resume *eventstore.Hash, closeOut func(ok bool) error, err error) {
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
			resume, flags = &h, os.O_WRONLY|os.O_APPEND
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
	if end < 0 {
		return eventstore.Hash{}, 0, usageError{fmt.Sprintf("--out %s has no complete line to resume after", path)}
	}
	lineStart := bytes.LastIndexByte(buf[:end], '\n') + 1
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

// exported is the last event written.
type exported struct {
	Position uint64
	Hash     eventstore.Hash
}

// export streams ReadEvents into w. The events are written as the log holds
// them, altered or not: verifying is audit verify's job. Only a resumed
// export checks that its first event links to the file's last.
func (c *client) export(ctx context.Context, w *bufio.Writer, from, to uint64, resume *eventstore.Hash) (uint64, exported, error) {
	l := &servicelog.Log{Name: c.ledger, Audit: c.audit, Query: c.query}
	var (
		n    uint64
		last exported
		buf  []byte
	)
	err := l.Read(ctx, from, to, func(recs []eventstore.Record) error {
		for i := range recs {
			r := &recs[i]
			if n == 0 && resume != nil && r.PrevHash != *resume {
				return fmt.Errorf("event %d does not link to the file's last event (prev_hash %x, file's last hash %x): "+
					"the file is not an export of this log", r.Position, r.PrevHash[:], resume[:])
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
		return nil
	})
	return n, last, err
}

// progressBar draws Verify's progress on a terminal's standard error, at
// most every progressEvery; elsewhere (a pipe, a file, a test) it is silent.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer // nil: not a terminal
	last  time.Time
	phase string
}

const (
	progressEvery = 100 * time.Millisecond
	progressWidth = 30
)

func newProgressBar() *progressBar {
	// golang.org/x/term is not a dependency: a character device is a
	// terminal for this purpose.
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return &progressBar{w: os.Stderr}
	}
	return &progressBar{}
}

func (b *progressBar) show(p audit.Progress) {
	if b.w == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if p.Phase == b.phase && now.Sub(b.last) < progressEvery && p.Done != p.Total {
		return
	}
	if p.Phase != b.phase && b.phase != "" {
		fmt.Fprintln(b.w)
	}
	b.phase, b.last = p.Phase, now
	if p.Total == 0 {
		fmt.Fprintf(b.w, "\r%-16s %d", p.Phase, p.Done)
		return
	}
	filled := int(min(p.Done, p.Total) * progressWidth / p.Total)
	fmt.Fprintf(b.w, "\r%-16s [%s%s] %3d%%  %d/%d", p.Phase, strings.Repeat("#", filled),
		strings.Repeat(".", progressWidth-filled), min(p.Done, p.Total)*100/p.Total, p.Done, p.Total)
}

func (b *progressBar) done() {
	if b.w != nil && b.phase != "" {
		fmt.Fprintln(b.w)
	}
}

// tabwriterLeft aligns a report's keys and values to the left.
func tabwriterLeft(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
