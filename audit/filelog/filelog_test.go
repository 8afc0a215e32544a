package filelog_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/eventstore"
)

// export writes chain (but omit) as log export does: event lines, then the
// trailer of what was written.
func export(t *testing.T, chain []eventstore.Record, omit uint64) []byte {
	t.Helper()
	var recs []eventstore.Record
	for _, r := range chain {
		if r.Position != omit {
			recs = append(recs, r)
		}
	}
	out, err := audit.AppendExport(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// An export read back: the ledger's name comes from the file, its head is
// its last line.
func TestLogContract(t *testing.T) {
	t.Parallel()
	logtest.Run(t, "exported", func(t *testing.T, chain []eventstore.Record, omit uint64) audit.Log {
		return &filelog.Log{Path: write(t, export(t, chain, omit))}
	}, logtest.Features{HeadUnknown: true})
}

// A file cut at a line boundary, one without a trailer (or whose trailer
// does not match) is refused with audit.ErrTrailer, naming what is wrong;
// its events are still handed over first.
func TestLogRefusesWithoutTrailer(t *testing.T) {
	t.Parallel()
	chain := logtest.Chain("acme", 20)
	whole := export(t, chain, 0)
	lines := bytes.SplitAfter(whole, []byte("\n"))
	trailer := lines[len(lines)-2]
	for name, tc := range map[string]struct {
		file []byte
		want string
	}{
		"cut":             {bytes.Join(lines[:15], nil), "missing"},
		"cut, trailer on": {append(bytes.Join(lines[:15], nil), trailer...), "says events 20, the file holds 15"},
		"event after":     {append(bytes.Clone(whole), lines[0]...), "not the last line"},
		"two trailers":    {append(bytes.Clone(whole), trailer...), "twice"},
		"version 2":       {bytes.Replace(bytes.Clone(whole), []byte(`"v":1`), []byte(`"v":2`), 1), "version 2"},
		"another ledger":  {append(bytes.Join(lines[:len(lines)-2], nil), bytes.Replace(trailer, []byte(`"ledger":"acme"`), []byte(`"ledger":"other"`), 1)...), `says ledger other, the file holds acme`},
	} {
		l := &filelog.Log{Path: write(t, tc.file)}
		var n int
		err := l.Read(context.Background(), 0, 0, func(recs []eventstore.Record) error { n += len(recs); return nil })
		if !errors.Is(err, audit.ErrTrailer) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrTrailer saying %q", name, err, tc.want)
		}
		if n == 0 {
			t.Errorf("%s: no events handed over before the refusal", name)
		}
	}
	l := &filelog.Log{Path: write(t, whole)}
	if err := l.Read(context.Background(), 0, 0, func([]eventstore.Record) error { return nil }); err != nil || l.Trailer == nil || l.Trailer.Last != 20 {
		t.Fatalf("the whole file: %v, trailer %+v", err, l.Trailer)
	}
	rep, err := audit.Verify(context.Background(), &filelog.Log{Path: write(t, bytes.Join(lines[:15], nil))}, nil, audit.Options{})
	if !errors.Is(err, audit.ErrTrailer) {
		t.Fatalf("verify of a cut export: %v, %v", rep, err)
	}
}

// A file cut at a line boundary whose trailer was recounted (it is not
// signed) but kept the anchors of the whole export is refused: a trailer
// carries anchors of its own positions only, of its own ledger.
func TestLogRefusesARecountedTrailer(t *testing.T) {
	t.Parallel()
	chain := logtest.Chain("acme", 20)
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	sign := func(ledger string, pos uint64) anchor.Anchor {
		a, err := s.Sign(ledger, pos, chain[pos-1].Hash, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cut := func(anchors ...anchor.Anchor) string {
		b := export(t, chain[:15], 0)
		b = b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))+1] // the events alone
		b, err := audit.AppendTrailer(b, &audit.Trailer{Ledger: "acme", Events: 15, First: 1, Last: 15,
			LastHash: hex.EncodeToString(chain[14].Hash[:]), Anchors: anchors})
		if err != nil {
			t.Fatal(err)
		}
		return write(t, b)
	}
	read := func(path string) error {
		return (&filelog.Log{Path: path}).Read(context.Background(), 0, 0, func([]eventstore.Record) error { return nil })
	}
	if err := read(cut(sign("acme", 10))); err != nil {
		t.Fatalf("15 events with an anchor at 10: %v", err)
	}
	for name, a := range map[string]anchor.Anchor{"the whole export's last": sign("acme", 20), "another ledger's": sign("other", 10)} {
		if err := read(cut(sign("acme", 10), a)); !errors.Is(err, audit.ErrTrailer) || !strings.Contains(err.Error(), "outside its positions") {
			t.Errorf("a trailer of 1..15 carrying %s anchor: %v, want ErrTrailer", name, err)
		}
	}
}

// A trailer carries at most audit.TrailerAnchorsMax anchors, each held to
// the file's event at its position: a reader keeps only those hashes.
func TestLogBoundsTheTrailersAnchors(t *testing.T) {
	t.Parallel()
	chain := logtest.Chain("acme", audit.TrailerAnchorsMax+1)
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	file := func(n int) string {
		var tc audit.TrailerCheck
		var b []byte
		for i := range chain {
			b = append(chain[i].AppendJSON(b), '\n')
			if err := tc.Event(&chain[i]); err != nil {
				t.Fatal(err)
			}
		}
		tr := tc.Written("acme")
		for i := range n {
			a, err := s.Sign("acme", chain[i].Position, chain[i].Hash, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			tr.Anchors = append(tr.Anchors, a)
		}
		b, err := audit.AppendTrailer(b, &tr)
		if err != nil {
			t.Fatal(err)
		}
		return write(t, b)
	}
	read := func(path string) error {
		return (&filelog.Log{Path: path}).Read(context.Background(), 0, 0, func([]eventstore.Record) error { return nil })
	}
	if err := read(file(audit.TrailerAnchorsMax)); err != nil {
		t.Errorf("a trailer of %d anchors: %v", audit.TrailerAnchorsMax, err)
	}
	if err := read(file(audit.TrailerAnchorsMax + 1)); !errors.Is(err, audit.ErrTrailer) || !strings.Contains(err.Error(), "anchors, over") {
		t.Errorf("a trailer of %d anchors: %v, want ErrTrailer", audit.TrailerAnchorsMax+1, err)
	}
}
