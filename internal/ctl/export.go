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

	"github.com/spf13/cobra"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/servicelog"
	"github.com/ledgerd/ledger/eventstore"
)

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
	w, resumed, closeOut, err := c.openExport(ctx, out, start)
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
// existing file) it first checks that the file can be resumed
// (exportResumable) and returns what it continues; only then is a line cut
// short by an interrupted export, or the trailer of a finished one, dropped:
// the trailer is written anew at the end. A resume refused leaves the file
// as it was.
func (c *client) openExport(ctx context.Context, path string, start uint64) (w *bufio.Writer, resume *exportResume,
	closeOut func(ok bool) error, err error) {
	if path == "" {
		w = bufio.NewWriterSize(c.out, 1<<16)
		return w, nil, func(bool) error { return w.Flush() }, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if start > 1 {
		if _, statErr := os.Stat(path); statErr == nil {
			if resume, err = c.exportResumable(ctx, path, start); err != nil {
				return nil, nil, nil, err
			}
			if err := os.Truncate(path, resume.size); err != nil {
				return nil, nil, nil, err
			}
			flags = os.O_WRONLY | os.O_APPEND
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

// exportResumable checks, reading only, that the export at path can be
// resumed at start with the log of c.ledger: the file ends with the event at
// start-1, of this ledger, and that event is the log's at start-1 (the same
// hash), so that the events to come, which link to the log's, link to the
// file's. A resume that fails after the file was cut would leave a file
// without its trailer; one that appended another ledger's trailer, a file
// that no reader accepts: both are refused before the file is touched.
//
// Errors: usageError (the file ends at another position, or is of another
// ledger); errExportForeign; the file's and ledgerd's.
func (c *client) exportResumable(ctx context.Context, path string, start uint64) (*exportResume, error) {
	end, err := exportTail(path, start)
	if err != nil {
		return nil, err
	}
	if end.ledger != c.ledger {
		return nil, usageError{fmt.Sprintf("--out %s is an export of ledger %s, not of %s: it is left as it was",
			path, end.ledger, c.ledger)}
	}
	if err := c.exportLinks(ctx, path, end); err != nil {
		return nil, err
	}
	tc, err := exportCount(path, end.size)
	if err != nil {
		return nil, err
	}
	return &exportResume{hash: end.hash, size: end.size, count: tc}, nil
}

// errExportForeign: the file resumed ends with an event the log does not
// hold (another history of a ledger of the same name, or an altered file).
var errExportForeign = errors.New("the file is not an export of this log")

// exportLinks checks that the file's last event is the log's event at its
// position.
//
// Errors: errExportForeign; ledgerd's.
func (c *client) exportLinks(ctx context.Context, path string, end exportEnd) error {
	l := &servicelog.Log{Name: c.ledger, Audit: c.audit, Query: c.query}
	var (
		logHash eventstore.Hash
		found   bool
	)
	err := l.Read(ctx, end.position, end.position, func(recs []eventstore.Record) error {
		for i := range recs {
			if recs[i].Position == end.position {
				logHash, found = recs[i].Hash, true
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("--out %s ends with position %d, which the log of %s does not hold: %w; it is left as it was",
			path, end.position, c.ledger, errExportForeign)
	case logHash != end.hash:
		return fmt.Errorf("--out %s: its event %d has hash %x, the log's %x: %w; it is left as it was",
			path, end.position, end.hash[:], logHash[:], errExportForeign)
	}
	return nil
}

// exportEnd is the last complete event of an export and the size of the
// file up to its line.
type exportEnd struct {
	ledger   string
	position uint64
	hash     eventstore.Hash
	size     int64
}

// exportTail returns the last complete event line of an export, which must
// be the event at start-1, past its trailer and a line cut short.
//
// Errors: usageError (no such line, or one at another position); the
// file's; the line's parse error.
func exportTail(path string, start uint64) (exportEnd, error) {
	f, err := os.Open(path)
	if err != nil {
		return exportEnd{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return exportEnd{}, err
	}
	off := max(st.Size()-exportTailMax, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return exportEnd{}, err
	}
	end := bytes.LastIndexByte(buf, '\n') // past it: a line cut short
	lineStart := bytes.LastIndexByte(buf[:max(end, 0)], '\n') + 1
	if end >= 0 && audit.IsTrailer(buf[lineStart:end]) {
		end = lineStart - 1 // a finished export: its trailer goes
		lineStart = bytes.LastIndexByte(buf[:max(end, 0)], '\n') + 1
	}
	if end < 0 {
		return exportEnd{}, usageError{fmt.Sprintf("--out %s has no complete line to resume after", path)}
	}
	r, err := eventstore.ParseRecordJSON(buf[lineStart:end])
	if err != nil {
		return exportEnd{}, fmt.Errorf("--out %s: last line: %w", path, err)
	}
	if r.Position != start-1 {
		return exportEnd{}, usageError{fmt.Sprintf("--out %s ends with position %d: resume with --from %d",
			path, r.Position, r.Position+1)}
	}
	return exportEnd{ledger: r.Ledger, position: r.Position, hash: r.Hash, size: off + int64(end) + 1}, nil
}

// exportResume is what a resumed export continues: the events of the file
// so far (its first size bytes) and the last one's hash.
type exportResume struct {
	hash  eventstore.Hash
	size  int64
	count audit.TrailerCheck
}

// exportCount counts the events of the first size bytes of an export (up
// to its last complete event line), for the trailer that will end it.
func exportCount(path string, size int64) (audit.TrailerCheck, error) {
	var tc audit.TrailerCheck
	f, err := os.Open(path)
	if err != nil {
		return tc, err
	}
	defer f.Close()
	br := audit.ImportNewLineReader(io.LimitReader(f, size))
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
				// exportLinks matched the file's last hash with the log's at
				// from-1: this is the log's own chain broken there.
				return fmt.Errorf("event %d does not link to the event before it (prev_hash %x, that event's hash %x): "+
					"the log's chain is broken (audit verify)", r.Position, r.PrevHash[:], resume.hash[:])
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
