// Package sourcetest is the contract every projections.Source holds, run
// against each implementation (the NATS stream in adapters/natsbus, the
// PostgreSQL log in projections): it delivers every record of a ledger, in
// order, from any position; a new source resumes where the last one left
// off; it waits on an empty ledger and on the head; it never returns more
// than asked; and it stops when its context ends.
//
// Only _test.go files import it.
package sourcetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// Limits of the suite.
const (
	// WaitMax bounds each wait for records a source should deliver.
	WaitMax = time.Minute
	// quiet is how long a source given nothing to deliver is watched for
	// delivering anyway; a wrong answer comes sooner in practice.
	quiet = 200 * time.Millisecond
	// logLen is the length of the suite's logs, in appends of appendMax.
	logLen    = 300
	appendMax = 64
)

// Harness is one implementation under the contract.
type Harness struct {
	// Store is where the suite appends ledgers' records (a migrated database).
	Store *eventstore.Store
	// Open returns a new source of ledger, as a restarted process would
	// make, closed at the end of the test. Whatever carries the log to it
	// (a relay) is the harness's to start.
	Open func(t *testing.T, ledger string) projections.Source
	// Appended, if set, is told that ledger's log has grown (a relay wakes).
	Appended func(ledger string)
}

// Run runs the contract; newHarness is called once per subtest, which runs
// in parallel with the others.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, h Harness)
	}{
		{"every record in order from any position", testInOrder},
		{"bounded batches", testBounded},
		{"a smaller max than the call before", testShrinkingMax},
		{"resumes after a restart", testResumes},
		{"empty ledger", testEmptyLedger},
		{"waits at the head", testWaitsAtHead},
		{"stops on cancel", testStopsOnCancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, newHarness(t))
		})
	}
}

// log is a ledger the suite appends to.
type log struct {
	h      Harness
	ledger string
	recs   []eventstore.Record
}

func newLog(t *testing.T, h Harness) *log {
	return &log{h: h, ledger: ledgerName()}
}

// append appends n records, in appends of at most appendMax.
func (l *log) append(t *testing.T, n int) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for n > 0 {
		size := min(n, appendMax)
		head := uint64(len(l.recs))
		var prev eventstore.Hash
		if head > 0 {
			prev = l.recs[head-1].Hash
		}
		recs := make([]eventstore.Record, size)
		for i := range recs {
			pos := head + uint64(i) + 1
			payload, err := domain.MarshalEvent(domain.AssetDefined{Code: fmt.Sprintf("A%d", pos), Scale: uint8(pos % 19)})
			noError(t, err)
			recs[i] = eventstore.Record{Ledger: l.ledger, Position: pos, Type: domain.TypeAssetDefined,
				SchemaVersion: domain.SchemaVersion, RecordedAt: now, CommandID: fmt.Sprintf("c-%d", pos), Payload: payload}
			recs[i].Seal(prev)
			prev = recs[i].Hash
		}
		noError(t, l.h.Store.Append(t.Context(), l.ledger, head, l.hashAt(head), recs))
		l.recs = append(l.recs, recs...)
		n -= size
	}
	if l.h.Appended != nil {
		l.h.Appended(l.ledger)
	}
}

func (l *log) hashAt(pos uint64) eventstore.Hash {
	if pos == 0 {
		return eventstore.Hash{}
	}
	return l.recs[pos-1].Hash
}

// read reads positions from..to with Next, max at a time, requiring each
// call to return 1..max records starting exactly where asked, equal to the
// log's.
func (l *log) read(t *testing.T, src projections.Source, from, to uint64, max int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitMax)
	defer cancel()
	for next := from; next <= to; {
		next += l.next(ctx, t, src, next, max)
	}
}

// next calls Next(from, max) once, requiring 1..max records starting
// exactly at from, equal to the log's; it returns how many.
func (l *log) next(ctx context.Context, t *testing.T, src projections.Source, from uint64, max int) uint64 {
	t.Helper()
	recs, err := src.Next(ctx, from, max)
	if err != nil {
		t.Fatalf("Next(%d, %d): %v", from, max, err)
	}
	if len(recs) == 0 || len(recs) > max {
		t.Fatalf("Next(%d, %d) returned %d records, want 1..%d", from, max, len(recs), max)
	}
	for i := range recs {
		pos := from + uint64(i)
		if pos > uint64(len(l.recs)) {
			t.Fatalf("Next(%d, %d): record %d beyond the head %d", from, max, recs[i].Position, len(l.recs))
		}
		if !same(&l.recs[pos-1], &recs[i]) {
			t.Fatalf("Next(%d, %d): record %d differs from the log's %d (-log +source):\n%s", from, max, i, pos,
				cmp.Diff(l.recs[pos-1], recs[i]))
		}
	}
	return uint64(len(recs))
}

// same is cmp.Equal for records, at a fraction of its cost under -race.
func same(a, b *eventstore.Record) bool {
	return a.Ledger == b.Ledger && a.Position == b.Position && a.Type == b.Type &&
		a.SchemaVersion == b.SchemaVersion && a.RecordedAt.Equal(b.RecordedAt) && a.CommandID == b.CommandID &&
		bytes.Equal(a.Payload, b.Payload) && a.PrevHash == b.PrevHash && a.Hash == b.Hash
}

// nothing requires Next(from) to deliver nothing for a while, then to
// return its context's error.
func nothing(t *testing.T, src projections.Source, from uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), quiet)
	defer cancel()
	recs, err := src.Next(ctx, from, 10)
	if len(recs) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next(%d) with nothing there returned %d records and %v, want none and %v", from, len(recs), err,
			context.DeadlineExceeded)
	}
}

func testInOrder(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, logLen)
	src := h.Open(t, l.ledger)
	l.read(t, src, 1, logLen, logLen)
	// Again from the middle, and back from the start, on the same source.
	l.read(t, src, logLen/2+1, logLen, 10_000)
	l.read(t, src, 1, 50, 17)
}

func testBounded(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, logLen)
	src := h.Open(t, l.ledger)
	for _, max := range []int{1, 2, 7, 100} {
		l.read(t, src, 1, logLen, max)
	}
}

// testShrinkingMax asks for fewer records than the call before, as a
// runner lingering for more of a small batch does: a source that reads
// ahead must not return the page it read for the larger max.
func testShrinkingMax(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, logLen)
	src := h.Open(t, l.ledger)
	// One context for every call, as a runner has: a source may read ahead
	// under it.
	ctx, cancel := context.WithTimeout(t.Context(), WaitMax)
	defer cancel()
	next := uint64(1)
	for _, max := range []int{100, 7, 1, 50, 3} {
		next += l.next(ctx, t, src, next, max)
	}
}

func testResumes(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, logLen)
	first := h.Open(t, l.ledger)
	l.read(t, first, 1, logLen/3, 25)
	// A new process resumes from its checkpoint, which the old one had
	// passed or not yet reached.
	l.read(t, h.Open(t, l.ledger), logLen/3+1, logLen, 25)
	l.read(t, h.Open(t, l.ledger), logLen/4, logLen/2, 25)
	// More records after the restart reach the new source.
	second := h.Open(t, l.ledger)
	l.read(t, second, logLen-10, logLen, 25)
	l.append(t, 30)
	l.read(t, second, logLen+1, logLen+30, 25)
}

func testEmptyLedger(t *testing.T, h Harness) {
	l := newLog(t, h)
	src := h.Open(t, l.ledger)
	nothing(t, src, 1)
	l.append(t, 5)
	l.read(t, src, 1, 5, 10)
}

func testWaitsAtHead(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, 40)
	src := h.Open(t, l.ledger)
	l.read(t, src, 1, 40, 100)
	nothing(t, src, 41)
	// A reader waiting at the head gets what is appended while it waits.
	got := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), WaitMax)
	defer cancel()
	go func() {
		recs, err := src.Next(ctx, 41, 100)
		if err == nil && (len(recs) == 0 || recs[0].Position != 41) {
			err = fmt.Errorf("%d records from %v, want from 41", len(recs), recs)
		}
		got <- err
	}()
	l.append(t, 3) // while it waits, or before: either way it must get them
	if err := <-got; err != nil {
		t.Fatalf("Next(41) waiting at the head: %v", err)
	}
}

func testStopsOnCancel(t *testing.T, h Harness) {
	l := newLog(t, h)
	l.append(t, 10)
	src := h.Open(t, l.ledger)
	l.read(t, src, 1, 10, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := src.Next(ctx, 11, 10)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel: %v, want %v", err, context.Canceled)
		}
	case <-time.After(WaitMax):
		t.Fatalf("Next still waiting %v after its context was cancelled", WaitMax)
	}
	// A cancelled call leaves the source usable.
	l.append(t, 2)
	l.read(t, src, 11, 12, 10)
}

// noError fails the test at once when err is not nil.
func noError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// ledgerName returns a new ledger name: random, so that suites sharing a
// database and a NATS server never meet.
func ledgerName() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // Never fails: crypto/rand crashes the program instead.
	return "source-" + hex.EncodeToString(b[:])
}
