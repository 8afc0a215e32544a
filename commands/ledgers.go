package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// LedgersMaxDefault bounds how many ledgers one process writes, and how many
// ledgers may be active or importing at once (CreateLedger refuses beyond).
const LedgersMaxDefault = 1024

var (
	// ErrInvalidLedger means a ledger name does not match its pattern.
	ErrInvalidLedger error = domain.NewInvalid("ledger", "invalid ledger name", "must match [a-z0-9][a-z0-9-]{0,62}")
	// ErrTooManyLedgers means the process already runs LedgersMax writers,
	// or LedgersMax ledgers are active or importing.
	ErrTooManyLedgers error = domain.NewError(domain.KindExhausted, "too many ledgers", "")
	// ErrLedgerArchived means the ledger is archived: it takes no commands.
	ErrLedgerArchived = eventstore.ErrLedgerArchived
	// ErrLedgerImporting means a log import writes the ledger: it takes no
	// commands until the import completes.
	ErrLedgerImporting = eventstore.ErrLedgerImporting
)

// headTimeout bounds the look-up of a ledger's status.
const headTimeout = 5 * time.Second

// Catalog is what the registry needs of the ledgers' table
// (eventstore.Store).
type Catalog interface {
	Ledger(ctx context.Context, name string) (eventstore.Ledger, error)
	CreateLedger(ctx context.Context, name string, liveMax int) (eventstore.Ledger, bool, error)
	SetLedgerStatus(ctx context.Context, name string, from, to eventstore.LedgerStatus) (eventstore.Ledger, bool, error)
}

// Ledgers starts and holds one Writer per ledger, on first use.
type Ledgers struct {
	ctx     context.Context
	catalog Catalog
	opts    Options
	max     int
	onStart func(ledger string)
	onStop  func(ledger string)
	// admit, when set, may refuse to start a writer (SetAdmit).
	admit func(ledger string) error

	// mu guards writers. Lock order: Ledgers.mu, then the locks of the
	// onStart and onStop callbacks (internal/daemon's Main.mu), then a
	// Writer's own mu (TryRetire, in retire). The callbacks therefore must
	// not call the registry, and whoever holds a callback's lock must not
	// either: ledgerd calls the registry only without Main.mu.
	mu      sync.Mutex
	writers map[string]*running
	// stops counts StopAll's calls: a writer admitted before one (its
	// catalog read in flight) is not started after it.
	stops uint64
	wg    sync.WaitGroup
}

// running is a started writer and what stops it.
type running struct {
	w      *Writer
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLedgers returns a registry whose writers run until ctx ends, each with
// opts (Ledger is filled in per writer), over the ledgers of catalog. onStart,
// if not nil, is called once for each ledger when its writer starts (to start
// its relay and projectors); onStop when its writer stops, because the ledger
// was archived or because it was idle (Options.IdleAfter): both are called
// under the registry's lock, in the order the writers start and stop, and
// must not call the registry.
func NewLedgers(ctx context.Context, catalog Catalog, opts Options, max int, onStart, onStop func(ledger string)) *Ledgers {
	if max <= 0 {
		max = LedgersMaxDefault
	}
	return &Ledgers{ctx: ctx, catalog: catalog, opts: opts, max: max, onStart: onStart, onStop: onStop,
		writers: make(map[string]*running)}
}

// SetAdmit makes the registry ask admit before it starts a ledger's writer,
// and return admit's error instead when there is one: a process that takes
// no writes (its roles), or that drains. Writers running are not asked.
// Call it before the registry is used.
func (l *Ledgers) SetAdmit(admit func(ledger string) error) { l.admit = admit }

// StopAll stops every running writer and waits for them, each committing
// (or refusing) its batch in flight: their leases are free for other
// processes. Writers may start again afterwards, as admit allows.
func (l *Ledgers) StopAll() {
	l.mu.Lock()
	l.stops++
	ledgers := make([]string, 0, len(l.writers))
	for ledger := range l.writers {
		ledgers = append(ledgers, ledger)
	}
	l.mu.Unlock()
	for _, ledger := range ledgers {
		l.stop(ledger)
	}
}

// Stop stops the ledger's writer, if it runs here, and waits for it: its
// batch in flight commits (or is refused), and its lease is released, so
// that another process may take the ledger (a move to a less loaded node).
func (l *Ledgers) Stop(ledger string) { l.stop(ledger) }

// Max is the bound on ledgers this registry holds.
func (l *Ledgers) Max() int { return l.max }

// Writer returns the writer of an existing, active ledger, starting it if
// needed.
//
// Errors: ErrInvalidLedger, domain.ErrUnknownLedger (an admin creates it:
// CreateLedger, or DefineAsset with the admin role), ErrLedgerArchived,
// ErrLedgerImporting, ErrTooManyLedgers, ErrClosed after ctx ended, or the
// error of reading the ledger's status.
func (l *Ledgers) Writer(ledger string) (*Writer, error) { return l.writer(ledger, false) }

// Create returns the ledger's writer, starting it, and so creating the ledger,
// if needed: for the command that begins a ledger (DefineAsset by an admin).
//
// Errors: as Writer, but never domain.ErrUnknownLedger.
func (l *Ledgers) Create(ledger string) (*Writer, error) { return l.writer(ledger, true) }

// CreateLedger creates an active, empty ledger unless it exists (created
// false); its writer starts on its first command.
//
// Errors: ErrInvalidLedger; ErrTooManyLedgers when LedgersMax ledgers are
// active or importing; the database error.
func (l *Ledgers) CreateLedger(ctx context.Context, ledger string) (eventstore.Ledger, bool, error) {
	if !domain.ValidLedgerName(ledger) {
		return eventstore.Ledger{}, false, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	lg, created, err := l.catalog.CreateLedger(ctx, ledger, l.max)
	if errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
		return eventstore.Ledger{}, false, fmt.Errorf("create %q: %w: %w", ledger, ErrTooManyLedgers, err)
	}
	return lg, created, err
}

// Archive makes an active ledger archived, then stops its writer here (a
// writer of another process is refused by the log at its next append) and
// calls onStop. Archiving an archived ledger answers it as it is.
//
// Errors: ErrInvalidLedger; domain.ErrUnknownLedger; ErrLedgerImporting;
// the database error.
func (l *Ledgers) Archive(ctx context.Context, ledger string) (eventstore.Ledger, error) {
	if !domain.ValidLedgerName(ledger) {
		return eventstore.Ledger{}, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	lg, _, err := l.catalog.SetLedgerStatus(ctx, ledger, eventstore.StatusActive, eventstore.StatusArchived)
	if err != nil {
		return eventstore.Ledger{}, err
	}
	// Once archived, no append commits: what the writer has queued fails
	// with ErrLedgerArchived or ErrClosed, never half applied.
	l.stop(ledger)
	return lg, nil
}

// Unarchive makes an archived ledger active again; its writer starts on its
// next command. Unarchiving an active ledger answers it as it is.
//
// Errors: ErrInvalidLedger; domain.ErrUnknownLedger; ErrLedgerImporting;
// the database error.
func (l *Ledgers) Unarchive(ctx context.Context, ledger string) (eventstore.Ledger, error) {
	if !domain.ValidLedgerName(ledger) {
		return eventstore.Ledger{}, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	lg, _, err := l.catalog.SetLedgerStatus(ctx, ledger, eventstore.StatusArchived, eventstore.StatusActive)
	return lg, err
}

// stop stops the ledger's writer, if it runs, and waits for it: its batch in
// flight commits (or is refused) first.
func (l *Ledgers) stop(ledger string) {
	l.mu.Lock()
	r, ok := l.writers[ledger]
	delete(l.writers, ledger)
	if l.onStop != nil {
		l.onStop(ledger)
	}
	l.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
	}
}

func (l *Ledgers) writer(ledger string, create bool) (*Writer, error) {
	if !domain.ValidLedgerName(ledger) {
		return nil, fmt.Errorf("%q: %w", ledger, ErrInvalidLedger)
	}
	if w, ok := l.running(ledger); ok {
		return w, nil
	}
	l.mu.Lock()
	stops := l.stops
	l.mu.Unlock()
	if l.admit != nil {
		if err := l.admit(ledger); err != nil {
			return nil, err
		}
	}
	// Read outside the registry's lock: a slow database must not stall the
	// look-ups of ledgers already running.
	ctx, cancel := context.WithTimeout(l.ctx, headTimeout)
	lg, err := l.catalog.Ledger(ctx, ledger)
	if create && errors.Is(err, domain.ErrUnknownLedger) {
		lg, _, err = l.catalog.CreateLedger(ctx, ledger, l.max)
		if errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
			err = fmt.Errorf("%w: %w", ErrTooManyLedgers, err)
		}
	}
	cancel()
	switch {
	case err != nil:
		return nil, err
	case lg.Status == eventstore.StatusArchived:
		return nil, fmt.Errorf("%q: %w", ledger, ErrLedgerArchived)
	case lg.Status == eventstore.StatusImporting:
		return nil, fmt.Errorf("%q: %w", ledger, ErrLedgerImporting)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.writers[ledger]; ok { // started meanwhile
		return r.w, nil
	}
	if l.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if l.stops != stops {
		// Admitted before a StopAll (a drain) that could not see it: ask
		// again, on the caller's retry.
		return nil, fmt.Errorf("%q: %w: its writers were stopped while it started", ledger, ErrNotAdmitted)
	}
	if len(l.writers) >= l.max {
		return nil, fmt.Errorf("%d ledgers: %w", len(l.writers), ErrTooManyLedgers)
	}
	opts := l.opts
	opts.Ledger = ledger
	opts.Retire = func(w *Writer) bool { return l.retire(ledger, w) }
	opts.Successor = func() (*Writer, error) { return l.Writer(ledger) }
	w := NewWriter(opts)
	wctx, wcancel := context.WithCancel(l.ctx)
	r := &running{w: w, cancel: wcancel, done: make(chan struct{})}
	l.writers[ledger] = r
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(r.done)
		_ = w.Run(wctx) // Run logs its own failures and returns only when ctx ends
	}()
	if l.onStart != nil {
		l.onStart(ledger)
	}
	return w, nil
}

// retire forgets the ledger's writer w, which stops idle, unless a request
// is on its way to it; onStop lets its relay and projectors stop once caught
// up. Under the registry's lock: a writer started for the ledger meanwhile
// (onStart) is ordered after it.
func (l *Ledgers) retire(ledger string, w *Writer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.writers[ledger]; !ok || r.w != w || !w.TryRetire() {
		return false
	}
	delete(l.writers, ledger)
	if l.onStop != nil {
		l.onStop(ledger)
	}
	return true
}

// Running is how many writers run.
func (l *Ledgers) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.writers)
}

// Runs says whether the ledger's writer runs in this registry.
func (l *Ledgers) Runs(ledger string) bool {
	_, ok := l.running(ledger)
	return ok
}

// RunningWriter returns the ledger's writer if it runs in this registry,
// without starting one.
func (l *Ledgers) RunningWriter(ledger string) (*Writer, bool) { return l.running(ledger) }

// running returns the ledger's writer if it runs.
func (l *Ledgers) running(ledger string) (*Writer, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.writers[ledger]
	if !ok {
		return nil, false
	}
	return r.w, true
}

// Wait blocks until every writer has stopped (after ctx ended), each having
// committed its batch in flight.
func (l *Ledgers) Wait() { l.wg.Wait() }
