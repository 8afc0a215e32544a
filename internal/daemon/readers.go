package daemon

import (
	"cmp"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// startReaders starts a ledger's relay and projections; the registry calls it
// once per ledger, when its writer starts.
func (m *Main) startReaders(ledger string) {
	streamOpts := natsbus.StreamOptions{MaxAge: m.Config.StreamMaxAge}
	relay := natsbus.NewRelay(ledger, m.js, m.store, streamOpts, m.Logger)
	runners := map[string]*projections.Runner{}
	m.mu.Lock()
	m.relays[ledger], m.runners[ledger] = relay, runners
	m.mu.Unlock()
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = relay.Run(m.readersCtx) }()
	for _, proj := range projections.All() {
		src := natsbus.NewSource(ledger, m.js, m.store, streamOpts, m.Logger)
		runner := projections.NewRunner(m.pool, ledger, proj, src, m.Logger).WithLinger(cmp.Or(m.Config.ProjectionLinger, projections.LingerDefault))
		m.mu.Lock()
		runners[proj.Name()] = runner
		m.mu.Unlock()
		m.wg.Add(1)
		go func() { defer m.wg.Done(); defer src.Close(); _ = runner.Run(m.readersCtx) }()
	}
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
