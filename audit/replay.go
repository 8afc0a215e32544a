package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ledgerd/ledger/eventstore"
)

// At is a point of the log: a position, or (Position 0) a time: the last
// event recorded at or before it. Both zero: the head.
type At struct {
	Position uint64
	Time     time.Time
}

// Snapshot is a ledger as its log says it was at a point.
type Snapshot struct {
	Ledger string `json:"ledger"`
	// Position is the last event folded; RecordedAt and Hash are its.
	Position   uint64    `json:"position"`
	RecordedAt time.Time `json:"recorded_at,omitzero"`
	Hash       string    `json:"hash,omitempty"`
	// Balances has every account opened by then, by id.
	Balances []Balance `json:"balances"`
	// TrialBalance has every asset defined by then, by code.
	TrialBalance []TrialBalanceLine `json:"trial_balance"`
}

// Replay folds the log of l from position 1 up to at, checking the chain on
// the way, and returns every account's balances and the trial balance there:
// from the log alone, no projection asked. At a time, it stops before the
// first event recorded after it (recorded time never goes back in a log).
//
// Errors: ErrBeyondHead for a position past the head; *DivergenceError when
// the log is broken before the point (a replay of it would mean nothing);
// a read that failed; an event this build cannot read.
func Replay(ctx context.Context, l Log, at At) (*Snapshot, error) {
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	if head != 0 && at.Position > head {
		return nil, fmt.Errorf("position %d, head %d: %w", at.Position, head, ErrBeyondHead)
	}
	to := head
	if at.Position != 0 {
		to = at.Position
	}
	b := newBook(false)
	c := chain{ledger: l.Ledger(), next: 1, anchored: true}
	// The fold runs beside the reading: receiving, decoding and hashing a
	// page overlap with folding the one before.
	f := startFold(b)
	var broken *Divergence
	stoppedAtTime := false
	err = l.Read(ctx, 1, to, func(recs []eventstore.Record) error {
		n := 0
		for n < len(recs) {
			r := &recs[n]
			if at.Position == 0 && !at.Time.IsZero() && r.RecordedAt.After(at.Time) {
				stoppedAtTime = true
				break
			}
			if broken = c.check(r); broken != nil {
				break
			}
			n++
		}
		if !f.send(recs[:n]) || stoppedAtTime || broken != nil {
			return errStop
		}
		return ctx.Err()
	})
	// What the fold found comes first: it is at an earlier position than
	// anything the reading found after it.
	d, ferr := f.wait()
	var malformed *MalformedError
	switch {
	case ferr != nil:
		return nil, ferr
	case d != nil:
		broken, stoppedAtTime = d, false
	case errors.As(err, &malformed):
		broken = malformed.divergence(c.next)
	case err != nil && !errors.Is(err, errStop):
		return nil, err
	}
	if broken == nil && !stoppedAtTime && to != 0 && b.position < to {
		if head == 0 {
			// A file ends where it ends: no head says rows are missing.
			return nil, fmt.Errorf("position %d, end of the log %d: %w", to, b.position, ErrBeyondHead)
		}
		broken = &Divergence{Kind: KindGap, Position: c.next,
			Expected: fmt.Sprintf("position %d (the log's head is %d)", c.next, head), Found: "the end of the log"}
	}
	if broken != nil {
		return nil, &DivergenceError{Divergence: broken}
	}
	return b.snapshot(l.Ledger()), nil
}

// snapshot is the book's balances and trial balance.
func (b *book) snapshot(ledger string) *Snapshot {
	s := &Snapshot{Ledger: ledger, Position: b.position, Balances: make([]Balance, 0, len(b.accounts)),
		TrialBalance: b.trialBalance()}
	if b.position != 0 {
		s.RecordedAt, s.Hash = b.recordedAt.UTC(), hex.EncodeToString(b.hash[:])
	}
	for _, id := range b.accountIDs() {
		s.Balances = append(s.Balances, b.balance(b.account(id)))
	}
	return s
}

// fold applies pages of records to a book on a goroutine of its own, in
// order, until the first divergence or error.
type fold struct {
	pages   chan []eventstore.Record
	done    chan struct{}
	stopped atomic.Bool
	broken  *Divergence
	err     error
}

// foldPagesMax bounds the pages read ahead of the fold.
const foldPagesMax = 2

func startFold(b *book) *fold {
	f := &fold{pages: make(chan []eventstore.Record, foldPagesMax), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for recs := range f.pages {
			for i := 0; i < len(recs) && f.broken == nil && f.err == nil; i++ {
				f.broken, f.err = b.apply(&recs[i])
			}
			if f.broken != nil || f.err != nil {
				f.stopped.Store(true)
			}
		}
	}()
	return f
}

// send queues a page; false once the fold has stopped.
func (f *fold) send(recs []eventstore.Record) bool {
	if f.stopped.Load() {
		return false
	}
	if len(recs) > 0 {
		f.pages <- recs
	}
	return true
}

// wait ends the fold and returns what stopped it.
func (f *fold) wait() (*Divergence, error) {
	close(f.pages)
	<-f.done
	return f.broken, f.err
}
