package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/eventstore"
)

// An export (ledgerctl log export) ends with a trailer line, the export
// format's version 1:
//
//	{"trailer":{"v":1,"ledger":"acme","events":N,"first":1,"last":N,"last_hash":"<hex>","anchors":[...]}}
//
// events counts the event lines above it, first and last are their first
// and last positions, last_hash the last one's hash, and anchors the signed
// anchors of the ledger within first..last that ledgerd had when the export
// ended. A file cut anywhere, at a line boundary too, has no trailer or one
// that does not match its lines: readers refuse it (ErrTrailer).

// TrailerVersion is the export format's version the trailer states.
const TrailerVersion = 1

// Limits of a trailer.
const (
	// TrailerAnchorsMax bounds the anchors a trailer carries (log export
	// writes the highest 16 within its positions): a reader keeps the hash of
	// the event at each one's position.
	TrailerAnchorsMax = 16
	// TrailerLineMax bounds a trailer line: 16 anchors of a ledger name of
	// 255 bytes take under 10 KiB.
	TrailerLineMax = 64 << 10
)

// ErrTrailer: an export without its trailer, or whose trailer does not
// match its events: a cut or altered file.
var ErrTrailer = errors.New("the export's trailer")

// trailerPrefix starts a trailer line, and no event line.
var trailerPrefix = []byte(`{"trailer":`)

// Trailer is the last line of an export.
type Trailer struct {
	V        int             `json:"v"`
	Ledger   string          `json:"ledger"`
	Events   uint64          `json:"events"`
	First    uint64          `json:"first"`
	Last     uint64          `json:"last"`
	LastHash string          `json:"last_hash"`
	Anchors  []anchor.Anchor `json:"anchors"`
}

// IsTrailer reports whether line is a trailer line.
func IsTrailer(line []byte) bool { return bytes.HasPrefix(bytes.TrimSpace(line), trailerPrefix) }

// AppendTrailer appends t's line, newline included.
func AppendTrailer(b []byte, t *Trailer) ([]byte, error) {
	t.V = TrailerVersion
	if t.Anchors == nil {
		t.Anchors = []anchor.Anchor{}
	}
	js, err := json.Marshal(struct {
		Trailer *Trailer `json:"trailer"`
	}{t})
	if err != nil {
		return nil, err
	}
	return append(append(b, js...), '\n'), nil
}

// ParseTrailer reads a trailer line.
//
// Errors: ErrTrailer (not a trailer of version 1, or over TrailerLineMax
// bytes or TrailerAnchorsMax anchors).
func ParseTrailer(line []byte) (Trailer, error) {
	if n := len(bytes.TrimSpace(line)); n > TrailerLineMax {
		return Trailer{}, fmt.Errorf("%w is %d bytes, over %d", ErrTrailer, n, TrailerLineMax)
	}
	var w struct {
		Trailer *Trailer `json:"trailer"`
	}
	if err := json.Unmarshal(line, &w); err != nil || w.Trailer == nil {
		return Trailer{}, fmt.Errorf("%w does not parse: %v", ErrTrailer, err)
	}
	if w.Trailer.V != TrailerVersion {
		return Trailer{}, fmt.Errorf("%w is of version %d: this build reads version %d", ErrTrailer, w.Trailer.V, TrailerVersion)
	}
	if n := len(w.Trailer.Anchors); n > TrailerAnchorsMax {
		return Trailer{}, fmt.Errorf("%w carries %d anchors, over %d", ErrTrailer, n, TrailerAnchorsMax)
	}
	return *w.Trailer, nil
}

// ReadTrailerAhead reads the trailer that ends the export f of size bytes,
// before its events: its last line that is not blank, within its last
// TrailerLineMax bytes and their line end.
//
// Errors: ErrTrailer (no trailer there, or one that does not parse); the
// read's.
func ReadTrailerAhead(f io.ReaderAt, size int64) (Trailer, error) {
	const lineEndMax = 2 // CRLF
	off := max(size-TrailerLineMax-lineEndMax, 0)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return Trailer{}, err
	}
	// Blank as ImportBlankLine has it: the readers pass such lines over.
	buf = bytes.TrimRightFunc(buf, unicode.IsSpace)
	last := buf[bytes.LastIndexByte(buf, '\n')+1:]
	if !IsTrailer(last) {
		return Trailer{}, fmt.Errorf("%w is not the file's last line", ErrTrailer)
	}
	return ParseTrailer(last)
}

// TrailerCheck counts an export's events as they are read, to hold its
// trailer to them.
type TrailerCheck struct {
	ledger      string // the first event's
	events      uint64
	first, last uint64
	lastHash    eventstore.Hash
	trailer     *Trailer
	// anchored holds the hashes of the events at the positions of the
	// anchors of the trailer read ahead (WatchAhead); zero: not read.
	anchored map[uint64]eventstore.Hash
}

// WatchAhead reads the trailer that ends the export f (ReadTrailerAhead)
// and has the check keep the hashes of the events at its
// anchors' positions, at most TrailerAnchorsMax: the trailer comes last, and
// End holds each of its anchors to the file's event at its position without
// keeping every hash. A file without a trailer there is left to End to
// refuse.
//
// Errors: the file's.
func (c *TrailerCheck) WatchAhead(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	t, err := ReadTrailerAhead(f, st.Size())
	if errors.Is(err, ErrTrailer) {
		return nil
	}
	if err != nil {
		return err
	}
	c.anchored = make(map[uint64]eventstore.Hash, len(t.Anchors))
	for i := range t.Anchors {
		c.anchored[t.Anchors[i].Position] = eventstore.Hash{}
	}
	return nil
}

// Event counts an event line.
//
// Errors: ErrTrailer (an event after the trailer).
func (c *TrailerCheck) Event(r *eventstore.Record) error {
	if c.trailer != nil {
		return fmt.Errorf("%w is not the last line: event %d follows it", ErrTrailer, r.Position)
	}
	if c.events == 0 {
		c.first, c.ledger = r.Position, r.Ledger
	}
	c.events++
	c.last, c.lastHash = r.Position, r.Hash
	if _, ok := c.anchored[r.Position]; ok {
		c.anchored[r.Position] = r.Hash
	}
	return nil
}

// Trailer takes the trailer line.
//
// Errors: ErrTrailer (a second trailer, one that does not parse).
func (c *TrailerCheck) Trailer(line []byte) error {
	if c.trailer != nil {
		return fmt.Errorf("%w appears twice", ErrTrailer)
	}
	t, err := ParseTrailer(line)
	if err != nil {
		return err
	}
	c.trailer = &t
	return nil
}

// End checks the trailer against the events read, at the end of the file,
// and returns it.
//
// Errors: ErrTrailer naming what is missing or differs.
func (c *TrailerCheck) End() (*Trailer, error) {
	t := c.trailer
	if t == nil {
		return nil, fmt.Errorf("%w is missing: the file ends after %d events (last position %d) without one: "+
			"a cut export, or one written before the format had trailers (export it again)", ErrTrailer, c.events, c.last)
	}
	lastHash, ledger := hex.EncodeToString(c.lastHash[:]), c.ledger
	if c.events == 0 {
		lastHash, ledger = "", t.Ledger // an empty export names its ledger alone
	}
	for _, f := range []struct {
		name        string
		want, found any
	}{{"ledger", t.Ledger, ledger}, {"events", t.Events, c.events}, {"first", t.First, c.first}, {"last", t.Last, c.last}, {"last_hash", t.LastHash, lastHash}} {
		if f.want != f.found {
			return nil, fmt.Errorf("%w says %s %v, the file holds %v: a cut or altered export", ErrTrailer, f.name, f.want, f.found)
		}
	}
	// An export's trailer carries anchors of its own positions only: one
	// past them, or of another ledger, is a trailer recounted after the
	// file was cut (the trailer is not signed; its anchors are).
	for i := range t.Anchors {
		a := &t.Anchors[i]
		if a.Ledger != t.Ledger || a.Position < t.First || a.Position > t.Last {
			return nil, fmt.Errorf("%w carries an anchor of %s at %d, outside its positions %d..%d of %s: a cut or altered export",
				ErrTrailer, a.Ledger, a.Position, t.First, t.Last, t.Ledger)
		}
		if err := c.checkAnchorHash(a); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkAnchorHash holds a, an anchor of the trailer, to the file's event at
// its position: an anchor signs a hash, and an export whose events were
// altered and re-sealed, its trailer's last_hash with them, still carries
// the anchors of the events it replaced.
//
// Errors: ErrTrailer.
func (c *TrailerCheck) checkAnchorHash(a *anchor.Anchor) error {
	h, ok := c.anchored[a.Position]
	switch {
	case !ok:
		return fmt.Errorf("%w carries an anchor at %d that the trailer read ahead of the events did not: "+
			"the file changed while it was read, or its trailer is not its last line", ErrTrailer, a.Position)
	case h != eventstore.Hash(a.Hash):
		return fmt.Errorf("%w carries an anchor at %d signing hash %x, the file's event there has %x: "+
			"an export altered and re-sealed", ErrTrailer, a.Position, a.Hash[:], h[:])
	}
	return nil
}

// Written is the trailer of the events counted, of ledger.
func (c *TrailerCheck) Written(ledger string) Trailer {
	t := Trailer{Ledger: ledger, Events: c.events, First: c.first, Last: c.last}
	if c.events > 0 {
		t.LastHash = hex.EncodeToString(c.lastHash[:])
	}
	return t
}

// AppendExport appends recs as an export: an event a line, then the
// trailer (without anchors).
func AppendExport(b []byte, recs []eventstore.Record) ([]byte, error) {
	var tc TrailerCheck
	ledger := ""
	for i := range recs {
		b = append(recs[i].AppendJSON(b), '\n')
		if err := tc.Event(&recs[i]); err != nil {
			return nil, err
		}
		ledger = recs[i].Ledger
	}
	t := tc.Written(ledger)
	return AppendTrailer(b, &t)
}
