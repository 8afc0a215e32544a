package daemon

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/version"
)

// Timing of the registry of nodes and of the listener of appends.
const (
	// nodeHeartbeatEvery is how often a process marks itself seen, and so
	// how late it learns that an operator drains it.
	nodeHeartbeatEvery = 2 * time.Second
	// nodeHeartbeatTimeout bounds one heartbeat.
	nodeHeartbeatTimeout = 5 * time.Second
	// listenRetryAfter is how long the listener of appends waits before it
	// connects again after its session failed.
	listenRetryAfter = time.Second
)

// Channels the processes sharing a database announce on (LISTEN/NOTIFY):
// appends (eventstore.NotifyChannel, sent in the append's transaction) and
// rebuilt read models, whose payload is the ledger's name.
const rebuiltChannel = "ledger_rebuilt"

// defaultNodeID is <host>:<port> of the gRPC address when it has a fixed
// port; else <host>-<pid>-<random>, unique among processes of one host.
func defaultNodeID(grpcAddr string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ledgerd"
	}
	if _, port, err := net.SplitHostPort(grpcAddr); err == nil && port != "" && port != "0" {
		return host + ":" + port
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// register records this process in the registry of nodes.
//
// Errors: the database error, wrapped.
func (m *Main) register(ctx context.Context) error {
	host, _ := os.Hostname()
	err := m.nodes.Register(ctx, eventstore.Node{ID: m.nodeID, Roles: m.roles.List(), GRPCAddr: m.advertiseAddr(),
		HTTPAddr: m.HTTPAddr(), Host: host, PID: os.Getpid(), Version: version.Get().Version, StartedAt: time.Now()})
	if err != nil {
		return fmt.Errorf("register this node: %w", err)
	}
	return nil
}

// advertiseAddr is the gRPC address other nodes reach this one at (their
// forwards): -advertise-addr, else the listener's with an unspecified host
// (0.0.0.0, ::) replaced by the host's name.
func (m *Main) advertiseAddr() string {
	if m.Config.AdvertiseAddr != "" {
		return m.Config.AdvertiseAddr
	}
	addr := m.GRPCAddr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil && name != "" {
			return net.JoinHostPort(name, port)
		}
	}
	return addr
}

// heartbeats marks this process seen every nodeHeartbeatEvery, registers it
// again if its row went, and starts or ends a drain as its row says.
func (m *Main) heartbeats(ctx context.Context) {
	t := time.NewTicker(nodeHeartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, nodeHeartbeatTimeout)
		draining, err := m.nodes.Heartbeat(hctx, m.nodeID)
		if errors.Is(err, eventstore.ErrUnknownNode) {
			err = m.register(hctx)
		}
		if err == nil {
			// The drain flag is the heartbeat's answer: it holds whether
			// or not the loads below can be read.
			m.setDraining(draining)
			err = m.forwarder.refreshLoads(hctx)
		}
		cancel()
		if err == nil && m.roles.Writer && !draining {
			m.forwarder.rebalance()
		}
		if err != nil && ctx.Err() == nil {
			m.Logger.Warn("node heartbeat", "node", m.nodeID, "err", err)
		}
	}
}

// setDraining starts or ends a drain. Draining, the process starts no
// writer and takes no projector lease; its writers stop (each commits its
// batch in flight and releases its lease), and its relays and projections
// stop once they reach the head, releasing theirs: other nodes take the
// ledgers over as commands and appends reach them.
func (m *Main) setDraining(on bool) {
	if m.draining.Swap(on) == on {
		return
	}
	if !on {
		m.Logger.Info("drain over: this node takes ledgers again", "node", m.nodeID)
		return
	}
	m.Logger.Info("draining: writers stop, relays and projections stop once caught up", "node", m.nodeID)
	m.mu.Lock()
	for _, r := range m.readers {
		select {
		case r.nudge <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
	// A writer admitted before the drain and starting still is refused by
	// the registry (its StopAll count moved), not started after this.
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.ledgers.StopAll() }()
}

// admitWriter lets a writer start here, or says why not
// (commands.Ledgers.SetAdmit).
func (m *Main) admitWriter(ledger string) error {
	switch {
	case !m.roles.Writer:
		return errNoWriterRole
	case m.draining.Load():
		return errDraining
	case m.forwarder.movedAway(ledger):
		return fmt.Errorf("%w: it moved the ledger to a less loaded node", commands.ErrNotAdmitted)
	case m.ledgers.Running() >= m.writersMax():
		return fmt.Errorf("%w: it runs its bound of %d writers (-writers-max)", commands.ErrNotAdmitted, m.writersMax())
	}
	return nil
}

// writersMax is Config.WritersMax, or its default.
func (m *Main) writersMax() int { return cmp.Or(m.Config.WritersMax, commands.LedgersMaxDefault) }

// listenAppends listens for the appends and rebuilds of every process
// sharing the database, until ctx ends: an append wakes the ledger's relay
// here, or starts its relay and projections if no process runs them (the
// projector lease decides); a rebuild restarts the ledger's projections
// here, which held in memory what came from the rows replaced.
func (m *Main) listenAppends(ctx context.Context) {
	for again := false; ctx.Err() == nil; again = true {
		err := m.listen(ctx, again)
		if ctx.Err() != nil {
			return
		}
		m.Logger.Warn("listener of appends: connecting again", "err", err, "after", listenRetryAfter)
		select {
		case <-ctx.Done():
		case <-time.After(listenRetryAfter):
		}
	}
}

// listen is one session of listenAppends. again says an earlier session
// ended: a rebuild announced meanwhile was not heard, so every ledger's
// readers here restart once this one listens.
func (m *Main) listen(ctx context.Context, again bool) error {
	cctx, cancel := context.WithTimeout(ctx, nodeHeartbeatTimeout)
	conn, err := pgx.ConnectConfig(cctx, m.projPool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), nodeHeartbeatTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	for _, ch := range []string{eventstore.NotifyChannel, rebuiltChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	// An append made while no session listened is found by the sweep.
	if again {
		m.mu.Lock()
		ledgers := make([]string, 0, len(m.readers))
		for ledger := range m.readers {
			ledgers = append(ledgers, ledger)
		}
		m.mu.Unlock()
		for _, ledger := range ledgers {
			m.restartReaders(ledger)
		}
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		// Any login may notify: a name that is no ledger's costs nothing.
		if !domain.ValidLedgerName(n.Payload) {
			continue
		}
		switch n.Channel {
		case eventstore.NotifyChannel:
			m.onAppended(n.Payload)
		case rebuiltChannel:
			m.restartReaders(n.Payload)
		}
	}
}

// onAppended wakes the ledger's readers if they run here; else starts them
// if the ledger's projections are behind (wakeReaders checks, off this
// goroutine).
func (m *Main) onAppended(ledger string) {
	m.mu.Lock()
	_, running := m.readers[ledger]
	m.mu.Unlock()
	if running {
		m.catchUpReaders(ledger)
		return
	}
	m.wakeReaders(ledger)
}

// announceRebuilt tells every process that ledger's read models were
// rebuilt: those that run its projections restart them (listenAppends).
// This process restarts its own first, without waiting for the message
// (its listener, when it projects, restarts them once more on the notice:
// a rebuild is rare, and a stale running total must not wait on a notice).
func (m *Main) announceRebuilt(ledger string) {
	m.restartReaders(ledger)
	ctx, cancel := context.WithTimeout(context.Background(), nodeHeartbeatTimeout)
	defer cancel()
	if _, err := m.projPool.Exec(ctx, `SELECT pg_notify($1, $2)`, rebuiltChannel, ledger); err != nil {
		m.Logger.Warn("announce a rebuild to the other nodes", "ledger", ledger, "err", err)
	}
}

// placementCollector exports this node's leases and drain, read on each
// scrape: which ledgers it writes and projects, and for how long.
type placementCollector struct {
	m                  *Main
	leaseAge, draining *prometheus.Desc
}

func newPlacementCollector(m *Main) *placementCollector {
	return &placementCollector{m: m,
		leaseAge: prometheus.NewDesc("ledger_lease_age_seconds",
			"How long this node has held the ledger's lease of the role (writer or projector).", []string{"ledger", "role"}, nil),
		draining: prometheus.NewDesc("ledger_node_draining", "1 while this node drains (ledgerctl nodes drain).", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *placementCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leaseAge
	ch <- c.draining
}

// Collect implements prometheus.Collector. When the query fails the lease
// ages are left out of this scrape.
func (c *placementCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, gauge(c.m.draining.Load()))
	// The leases as the last heartbeat read them (every 2 s): a scrape
	// reads no database.
	mine := c.m.forwarder.mine.Load()
	if mine == nil {
		return
	}
	for _, p := range *mine {
		ch <- prometheus.MustNewConstMetric(c.leaseAge, prometheus.GaugeValue, time.Since(p.AcquiredAt).Seconds(), p.Ledger, p.Role)
	}
}
