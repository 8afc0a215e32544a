package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ledgerd/ledger/domain"
)

// LedgersMaxDefault bounds how many ledgers one process writes.
const LedgersMaxDefault = 1024

var (
	// ErrInvalidLedger means a ledger name does not match its pattern.
	ErrInvalidLedger = errors.New("invalid ledger name")
	// ErrTooManyLedgers means the process already runs LedgersMax writers.
	ErrTooManyLedgers = errors.New("too many ledgers")
)

// Ledgers starts and holds one Writer per ledger, on first use.
type Ledgers struct {
	ctx     context.Context
	opts    Options
	max     int
	onStart func(ledger string)

	mu      sync.Mutex
	writers map[string]*Writer
	wg      sync.WaitGroup
}

// NewLedgers returns a registry whose writers run until ctx ends, each with
// opts (Ledger is filled in per writer). onStart, if not nil, is called once
// for each ledger when its writer starts (to start its relay and projectors).
func NewLedgers(ctx context.Context, opts Options, max int, onStart func(ledger string)) *Ledgers {
	if max <= 0 {
		max = LedgersMaxDefault
	}
	return &Ledgers{ctx: ctx, opts: opts, max: max, onStart: onStart, writers: make(map[string]*Writer)}
}

// Writer returns the ledger's writer, starting it if needed.
//
// Errors: ErrInvalidLedger, ErrTooManyLedgers, ErrClosed after ctx ended.
func (l *Ledgers) Writer(ledger string) (*Writer, error) {
	if !domain.ValidLedgerName(ledger) {
		return nil, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.writers[ledger]; ok {
		return w, nil
	}
	if l.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if len(l.writers) >= l.max {
		return nil, fmt.Errorf("%d ledgers: %w", len(l.writers), ErrTooManyLedgers)
	}
	opts := l.opts
	opts.Ledger = ledger
	w := NewWriter(opts)
	l.writers[ledger] = w
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = w.Run(l.ctx) // Run logs its own failures and returns only when ctx ends
	}()
	if l.onStart != nil {
		l.onStart(ledger)
	}
	return w, nil
}

// Wait blocks until every writer has stopped (after ctx ended), each having
// committed its batch in flight.
func (l *Ledgers) Wait() { l.wg.Wait() }
