package daemon

import (
	"cmp"
	"context"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// ledgerReaders is what stops one ledger's relay and projections.
type ledgerReaders struct {
	cancel context.CancelFunc
	// stopping is set while they catch up before stopping (an archive); a
	// start meanwhile clears it and they keep running.
	stopping bool
}

// startReaders starts a ledger's relay and projections; the registry calls it
// when the ledger's writer starts. They run already when the ledger was
// archived and made active again before they stopped: they keep running.
func (m *Main) startReaders(ledger string) {
	m.mu.Lock()
	if r, ok := m.readers[ledger]; ok {
		r.stopping = false
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(m.readersCtx)
	m.readers[ledger] = &ledgerReaders{cancel: cancel}
	m.mu.Unlock()
	streamOpts := natsbus.StreamOptions{MaxAge: m.Config.StreamMaxAge}
	relay := natsbus.NewRelay(ledger, m.js, m.store, streamOpts, m.Logger)
	runners := map[string]*projections.Runner{}
	m.mu.Lock()
	m.relays[ledger], m.runners[ledger] = relay, runners
	m.mu.Unlock()
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = relay.Run(ctx) }()
	for _, proj := range projections.All() {
		src := natsbus.NewSource(ledger, m.js, m.store, streamOpts, m.Logger)
		runner := projections.NewRunner(m.pool, ledger, proj, src, m.Logger).WithLinger(cmp.Or(m.Config.ProjectionLinger, projections.LingerDefault))
		m.mu.Lock()
		runners[proj.Name()] = runner
		m.mu.Unlock()
		m.wg.Add(1)
		go func() { defer m.wg.Done(); defer src.Close(); _ = runner.Run(ctx) }()
	}
}

// stopReaders stops a ledger's relay and projections once every projection
// has reached the ledger's head: the registry calls it when the ledger was
// archived, after its writer stopped, so the head moves no more. Queries keep
// reading the read models they leave.
func (m *Main) stopReaders(ledger string) {
	m.mu.Lock()
	r, ok := m.readers[ledger]
	if !ok || r.stopping {
		m.mu.Unlock()
		return
	}
	r.stopping = true
	runners := m.runners[ledger]
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.catchUp(ledger, runners); err != nil {
			return // ledgerd is stopping: so are they
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if cur, ok := m.readers[ledger]; !ok || cur != r || !r.stopping {
			return // started again meanwhile
		}
		r.cancel()
		delete(m.readers, ledger)
		delete(m.relays, ledger)
		delete(m.runners, ledger)
		m.Logger.Info("ledger archived: relay and projections stopped", "ledger", ledger)
	}()
}

// catchUp waits until every runner has applied the ledger's head.
//
// Errors: the readers' context's error, or the database error reading the head.
func (m *Main) catchUp(ledger string, runners map[string]*projections.Runner) error {
	head, _, err := m.store.Head(m.readersCtx, ledger)
	if err != nil {
		m.Logger.Error("archive: head; the relay and projections keep running", "ledger", ledger, "err", err)
		return err
	}
	m.mu.Lock()
	list := make([]*projections.Runner, 0, len(runners))
	for _, rn := range runners {
		list = append(list, rn)
	}
	m.mu.Unlock()
	for _, rn := range list {
		if err := rn.WaitFor(m.readersCtx, head); err != nil {
			return err
		}
	}
	return nil
}

func (m *Main) onCommit(ledger string, recs []eventstore.Record) {
	m.metrics.commits.WithLabelValues(ledger).Inc()
	m.metrics.committed.WithLabelValues(ledger).Add(float64(len(recs)))
	m.mu.Lock()
	relay := m.relays[ledger]
	m.mu.Unlock()
	if relay != nil {
		relay.Offer(recs)
	}
}

// waiter gives queries the in-process notifier of a ledger's projection.
func (m *Main) waiter(ledger, projection string) queries.Waiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.runners[ledger][projection]; ok {
		return r
	}
	return nil
}
