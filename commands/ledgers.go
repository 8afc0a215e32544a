package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// LedgersMaxDefault bounds how many ledgers one process writes.
const LedgersMaxDefault = 1024

var (
	// ErrInvalidLedger means a ledger name does not match its pattern.
	ErrInvalidLedger = errors.New("invalid ledger name")
	// ErrTooManyLedgers means the process already runs LedgersMax writers.
	ErrTooManyLedgers = errors.New("too many ledgers")
	// ErrUnknownLedger means the ledger has no events yet: only DefineAsset
	// may create it.
	ErrUnknownLedger = errors.New("unknown ledger")
)

// headTimeout bounds the look-up of an unknown ledger's head.
const headTimeout = 5 * time.Second

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

// Writer returns the writer of an existing ledger (one with events in the
// log), starting it if needed.
//
// Errors: ErrInvalidLedger, ErrUnknownLedger, ErrTooManyLedgers, ErrClosed
// after ctx ended, or the error of reading the ledger's head.
func (l *Ledgers) Writer(ledger string) (*Writer, error) { return l.writer(ledger, false) }

// Create returns the ledger's writer, starting it, and so creating the ledger,
// if needed: for the command that begins a ledger (DefineAsset).
//
// Errors: as Writer, but never ErrUnknownLedger.
func (l *Ledgers) Create(ledger string) (*Writer, error) { return l.writer(ledger, true) }

func (l *Ledgers) writer(ledger string, create bool) (*Writer, error) {
	if !domain.ValidLedgerName(ledger) {
		return nil, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	if w, ok := l.running(ledger); ok {
		return w, nil
	}
	if !create {
		// Read outside the registry's lock: a slow database must not stall
		// the look-ups of ledgers already running.
		ctx, cancel := context.WithTimeout(l.ctx, headTimeout)
		head, _, err := l.opts.Store.Head(ctx, ledger)
		cancel()
		if err != nil {
			return nil, err
		}
		if head == 0 {
			return nil, fmt.Errorf("%q: %w", ledger, ErrUnknownLedger)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.writers[ledger]; ok { // started meanwhile
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

// running returns the ledger's writer if it runs.
func (l *Ledgers) running(ledger string) (*Writer, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.writers[ledger]
	return w, ok
}

// Wait blocks until every writer has stopped (after ctx ended), each having
// committed its batch in flight.
func (l *Ledgers) Wait() { l.wg.Wait() }
