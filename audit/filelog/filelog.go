// Package filelog reads an exported log (JSON Lines, as ledgerctl log
// export writes it) from a file: an audit.Log that needs no ledgerd.
package filelog

import (
	"bufio"
	"context"
	"fmt"
	"os"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of Log.
const (
	// fileLineMax bounds one line of an export: the longest a writer writes
	// (audit.ImportLineMax, a period's close over the most assets) is below
	// it.
	fileLineMax = 4 << 20
	// filePageMax is the records Log hands over at once.
	filePageMax = 1000
)

// Log reads an export (JSON Lines, one eventstore.Record.AppendJSON per
// line) from a file, which may be read again.
type Log struct {
	Path string
	// Name is the ledger's name; empty: the first event's.
	Name string
	// Trailer is the file's trailer, once a Read reached the end.
	Trailer *audit.Trailer
}

func (l *Log) Ledger() string { return l.Name }

// Head is 0: a file's head is its last line.
func (l *Log) Head(context.Context) (uint64, error) { return 0, nil }

// HeadUnknown says that a file's end is not the ledger's head
// (audit.HeadUnknown): an export ends where it was cut.
func (l *Log) HeadUnknown() {}

// Read reads the file from the start, skipping positions before from. A
// read to the end checks the file's trailer (audit.TrailerCheck): a file
// without one, or whose trailer does not match its events, is refused
// after its events were handed over.
//
// Errors: the file's; *audit.MalformedError for a line that does not parse;
// audit.ErrTrailer.
func (l *Log) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	if to != 0 && max(from, 1) > to {
		return fmt.Errorf("read %s from %d to %d: %w", l.Name, from, to, audit.ErrRange)
	}
	f, err := os.Open(l.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	var tc audit.TrailerCheck
	if err := tc.WatchAhead(f); err != nil {
		return err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), fileLineMax)
	page := make([]eventstore.Record, 0, filePageMax)
	var last uint64
	for sc.Scan() {
		// log import's rule (audit.ImportBlankLine): the two readers of an
		// export must judge the same file alike.
		if audit.ImportBlankLine(sc.Bytes()) {
			continue
		}
		if audit.IsTrailer(sc.Bytes()) {
			if err := tc.Trailer(sc.Bytes()); err != nil {
				return l.refuse(fn, page, err)
			}
			continue
		}
		r, err := eventstore.ParseRecordJSON(sc.Bytes())
		if err != nil {
			if ferr := fn(page); ferr != nil {
				return ferr
			}
			return &audit.MalformedError{Position: last + 1, Err: err}
		}
		last = r.Position
		if err := tc.Event(&r); err != nil {
			return l.refuse(fn, page, err)
		}
		if l.Name == "" {
			l.Name = r.Ledger
		}
		if r.Position < from {
			continue
		}
		if to != 0 && r.Position > to {
			return l.flush(fn, page) // not to the end: the trailer is not reached
		}
		page = append(page, r)
		if len(page) == filePageMax {
			if err := fn(page); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			page = make([]eventstore.Record, 0, filePageMax)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", l.Path, err)
	}
	t, err := tc.End()
	if err != nil {
		return l.refuse(fn, page, err)
	}
	l.Trailer = t
	return l.flush(fn, page)
}

func (l *Log) flush(fn func([]eventstore.Record) error, page []eventstore.Record) error {
	if len(page) > 0 {
		return fn(page)
	}
	return nil
}

// refuse hands over what was read before err (a divergence there comes
// first), then returns err with the file's name.
func (l *Log) refuse(fn func([]eventstore.Record) error, page []eventstore.Record, err error) error {
	if ferr := l.flush(fn, page); ferr != nil {
		return ferr
	}
	return fmt.Errorf("%s: %w", l.Path, err)
}
