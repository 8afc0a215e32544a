// Package logtest is the contract every audit.Log passes, whatever it reads
// (a running ledgerd, the event store, an export): one suite, run by each
// reader's own tests with an Opener that puts a given chain where that reader
// reads it. Verify and Replay rely on exactly what it checks.
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// ChainLen is the events of the suite's chain: more than two pages of every
// reader (a ReadEvents message and a file page hold 1,000), so that reads
// cross page boundaries, and well under eventstore.ReadMax, so that a store
// appends it at once.
const ChainLen = 2345

// Opener puts chain (a sealed log of one ledger, from position 1) where the
// reader under test reads it, leaving out the record at position omit (0:
// none), and returns the reader. It fails t if it cannot.
type Opener func(t *testing.T, chain []eventstore.Record, omit uint64) audit.Log

// Features are what a reader may legitimately not do.
type Features struct {
	// HeadUnknown: Head answers 0 (a file, whose end is its head).
	HeadUnknown bool
}

// Chain returns a sealed log of n events of ledger, each valid for the
// domain (an asset per event), recorded a millisecond apart.
func Chain(ledger string, n int) []eventstore.Record {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := make([]eventstore.Record, n)
	var prev eventstore.Hash
	for i := range recs {
		pos := uint64(i + 1)
		code := fmt.Sprintf("C%d", pos)
		recs[i] = eventstore.Record{Ledger: ledger, Position: pos, Type: "AssetDefined",
			SchemaVersion: domain.SchemaVersion, RecordedAt: at.Add(time.Duration(i) * time.Millisecond),
			CommandID: code, Payload: domain.AppendEvent(nil, domain.AssetDefined{Code: code, Scale: 2})}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	return recs
}

// Run runs the contract against the reader open returns: every event read
// in order, from a position, to a bound, past the end; the head; a range
// refused; a gap handed over as it is; fn's error returned at once.
func Run(t *testing.T, ledger string, open Opener, f Features) {
	chain := Chain(ledger, ChainLen)
	n := uint64(len(chain))
	l := open(t, chain, 0)

	t.Run("ReadAll", func(t *testing.T) {
		got := read(t, l, 0, 0)
		if diff := diffRecords(chain, got); diff != "" {
			t.Errorf("Read(0, 0) (-want +got):\n%s", diff)
		}
		if l.Ledger() != ledger {
			t.Errorf("Ledger() = %q after a read, want %q", l.Ledger(), ledger)
		}
	})
	t.Run("ReadRanges", func(t *testing.T) {
		for _, c := range []struct{ from, to uint64 }{
			{1, 1}, {1, 0}, {2, 0}, {999, 1001}, {1000, 2001}, {n, 0}, {n, n}, {n - 1, n + 5}, {17, 17},
		} {
			want := chain[c.from-1:]
			if c.to != 0 {
				want = chain[c.from-1 : min(c.to, n)]
			}
			if diff := diffRecords(want, read(t, l, c.from, c.to)); diff != "" {
				t.Errorf("Read(%d, %d) (-want +got):\n%s", c.from, c.to, diff)
			}
		}
	})
	t.Run("ReadPastTheEnd", func(t *testing.T) {
		for _, c := range []struct{ from, to uint64 }{{n + 1, 0}, {n + 1, n + 1}, {n + 1000, n + 2000}} {
			if got := read(t, l, c.from, c.to); len(got) != 0 {
				t.Errorf("Read(%d, %d) = %d records from %d, want none", c.from, c.to, len(got), got[0].Position)
			}
		}
	})
	t.Run("Head", func(t *testing.T) {
		head, err := l.Head(ctx(t))
		if err != nil {
			t.Fatalf("Head: %v", err)
		}
		if head != n && (head != 0 || !f.HeadUnknown) {
			t.Errorf("Head = %d, want %d", head, n)
		}
	})
	t.Run("RangeRefused", func(t *testing.T) {
		for _, c := range []struct{ from, to uint64 }{{5, 4}, {n + 1, n}, {2, 1}} {
			called := false
			err := l.Read(ctx(t), c.from, c.to, func([]eventstore.Record) error { called = true; return nil })
			if !errors.Is(err, audit.ErrRange) || called {
				t.Errorf("Read(%d, %d): %v, fn called %v; want ErrRange before any read", c.from, c.to, err, called)
			}
		}
	})
	t.Run("StopsAtFnError", func(t *testing.T) {
		errMine := errors.New("enough")
		calls := 0
		err := l.Read(ctx(t), 1, 0, func([]eventstore.Record) error { calls++; return errMine })
		if !errors.Is(err, errMine) || calls != 1 {
			t.Errorf("Read with fn failing: %v after %d calls, want fn's error after 1", err, calls)
		}
	})
	t.Run("Gap", func(t *testing.T) {
		const missing = 1500
		gapped := open(t, chain, missing)
		want := append(append([]eventstore.Record(nil), chain[:missing-1]...), chain[missing:]...)
		if diff := diffRecords(want, read(t, gapped, 1, 0)); diff != "" {
			t.Errorf("Read of a log without %d (-want +got):\n%s", missing, diff)
		}
		if diff := diffRecords(chain[missing:missing+3], read(t, gapped, missing, missing+3)); diff != "" {
			t.Errorf("Read(%d, %d) from the missing position (-want +got):\n%s", missing, missing+3, diff)
		}
	})
}

// Store puts chain in the event store of pool's database (migrated), then
// removes the record at omit (0: none) with the events table's append-only
// triggers off: what only the table's owner can do, and what an auditor
// reading the store, or a ledgerd serving it, must hand over as it is.
func Store(t *testing.T, pool *pgxpool.Pool, chain []eventstore.Record, omit uint64) {
	t.Helper()
	c := ctx(t)
	if err := eventstore.Migrate(c, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := eventstore.New(pool).Append(c, chain[0].Ledger, 0, eventstore.Hash{}, chain); err != nil {
		t.Fatalf("append the chain: %v", err)
	}
	if omit == 0 {
		return
	}
	err := pgx.BeginFunc(c, pool, func(tx pgx.Tx) error {
		for _, sql := range []string{`ALTER TABLE events DISABLE TRIGGER USER`,
			fmt.Sprintf(`DELETE FROM events WHERE ledger = '%s' AND position = %d`, chain[0].Ledger, omit),
			`ALTER TABLE events ENABLE TRIGGER USER`} {
			if _, err := tx.Exec(c, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("remove position %d: %v", omit, err)
	}
}

// read returns every record Read hands over, checking that pages are never
// reused (each is kept, then compared as a whole).
func read(t *testing.T, l audit.Log, from, to uint64) []eventstore.Record {
	t.Helper()
	var pages [][]eventstore.Record
	err := l.Read(ctx(t), from, to, func(recs []eventstore.Record) error {
		pages = append(pages, recs)
		return nil
	})
	if err != nil {
		t.Fatalf("Read(%d, %d): %v", from, to, err)
	}
	var out []eventstore.Record
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// diffRecords is cmp.Diff(want, got), reached only when the two differ: cmp
// walks every byte of every hash by reflection, which was more than half of
// the suite's CPU under the race detector for equal logs of 2,345 events.
func diffRecords(want, got []eventstore.Record) string {
	if slices.EqualFunc(want, got, sameRecord) {
		return ""
	}
	return cmp.Diff(want, got)
}

func sameRecord(a, b eventstore.Record) bool {
	return a.Ledger == b.Ledger && a.Position == b.Position && a.Type == b.Type && a.SchemaVersion == b.SchemaVersion &&
		a.RecordedAt.Equal(b.RecordedAt) && a.CommandID == b.CommandID &&
		bytes.Equal(a.Payload, b.Payload) && a.PrevHash == b.PrevHash && a.Hash == b.Hash
}
