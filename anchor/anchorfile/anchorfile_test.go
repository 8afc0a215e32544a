package anchorfile_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
)

// Anchors appended per ledger come back from the directory by ledger and
// position, and from one file; a line that is not an anchor is refused
// with its file and line.
func TestSinkLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	sink := &anchorfile.Sink{Dir: dir}
	for _, p := range []struct {
		ledger string
		pos    uint64
	}{{"b", 7}, {"a", 9}, {"a", 3}} {
		a, err := s.Sign(p.ledger, p.pos, [32]byte{1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Put(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	all, err := anchorfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range all {
		got = append(got, a.Ledger+":"+string(rune('0'+a.Position)))
	}
	if strings.Join(got, " ") != "a:3 a:9 b:7" {
		t.Fatalf("loaded %v", got)
	}
	one, err := anchorfile.Load(anchorfile.Path(dir, "b"))
	if err != nil || len(one) != 1 || anchor.NewKeyring(s.Public()).Verify(&one[0]) != nil {
		t.Fatalf("one file: %v, %v", one, err)
	}
	f, err := os.OpenFile(anchorfile.Path(dir, "a"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{\"v\":1}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := anchorfile.Load(dir); !errors.Is(err, anchor.ErrMalformed) || !strings.Contains(err.Error(), filepath.Base(anchorfile.Path(dir, "a"))+" line 3") {
		t.Fatalf("a malformed line: %v", err)
	}
}

// A ledger name that is not a file name (a heads row made by hand in the
// database) writes nothing, inside the directory or out of it.
func TestSinkRefusesAPathAsLedger(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	sink := &anchorfile.Sink{Dir: filepath.Join(dir, "anchors")}
	for _, ledger := range []string{"../escaped", "a/b", ".."} {
		a, err := s.Sign(ledger, 1, [32]byte{1}, time.Now())
		if err != nil {
			continue // not even signed: nothing to write
		}
		if err := sink.Put(context.Background(), a); !errors.Is(err, anchor.ErrMalformed) {
			t.Errorf("ledger %q: %v, want anchor.ErrMalformed", ledger, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped.anchors.jsonl")); err == nil {
		t.Error("a ledger named ../escaped wrote outside the anchor directory")
	}
}

// Last is the anchor of the highest position among the file's last lines
// (a period close may sign a lower head after a higher one), also when the
// file is longer than what it reads; none without a file. A last line
// torn by a crash is not an anchor: Last passes it over, and the next Put
// cuts it off, so that the file reads whole.
func TestSinkLast(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := anchor.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	sink := &anchorfile.Sink{Dir: dir}
	if _, ok, err := sink.Last("a"); ok || err != nil {
		t.Fatalf("no file: %v, %v", ok, err)
	}
	for pos := uint64(1); pos <= 200; pos++ { // some 60 KB: more than the tail read
		a, err := s.Sign("a", pos, [32]byte{byte(pos)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Put(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	lower, err := s.Sign("a", 150, [32]byte{150}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(context.Background(), lower); err != nil {
		t.Fatal(err)
	}
	last, ok, err := sink.Last("a")
	if err != nil || !ok || last.Position != 200 || last.Hash != [32]byte{200} {
		t.Fatalf("last: %+v, %v, %v; want position 200", last, ok, err)
	}
	f, err := os.OpenFile(anchorfile.Path(dir, "a"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"v":1,"ledger":"a","position":201,"ha`); err != nil { // torn
		t.Fatal(err)
	}
	f.Close()
	if last, ok, err := sink.Last("a"); err != nil || !ok || last.Position != 200 {
		t.Fatalf("after a torn write: %+v, %v, %v; want position 200", last, ok, err)
	}
	next, err := s.Sign("a", 201, [32]byte{201}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	all, err := anchorfile.Load(anchorfile.Path(dir, "a"))
	if err != nil || len(all) != 202 {
		t.Fatalf("the file after the torn write and a Put: %d anchors, %v; want 202", len(all), err)
	}
}
