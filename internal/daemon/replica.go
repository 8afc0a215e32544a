package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/queries"
)

// Read replica (-postgres-replica-url): the queries read from a PostgreSQL
// streaming replica, and from the primary (the -postgres-read-url login)
// when the replica is down or has not reached a call's min_position within
// -replica-fallback-after (queries.Service.WithPrimary).
const (
	// ReplicaFallbackAfterDefault is how long a query waits for the replica
	// to reach its min_position before it reads from the primary.
	ReplicaFallbackAfterDefault = time.Second
	// replicaCheckEvery is how often the replica is pinged, and so how long
	// a dead replica's queries may fail before they go to the primary.
	replicaCheckEvery = time.Second
	// replicaCheckTimeout bounds one ping: a replica slower than that is
	// taken for down.
	replicaCheckTimeout = time.Second
)

// openReplica opens the replica's pool, without waiting for the replica: a
// replica down at start is marked down, and the queries read from the
// primary until it answers. A replica that answers is checked for the
// reader's role, and for being a replica (a primary given by mistake is
// said in the log: it works, but spreads nothing).
//
// Errors: a malformed URL; ErrRoleMissing.
func (m *Main) openReplica(ctx context.Context, connsMax int) error {
	if m.Config.PostgresReplicaURL == "" {
		return nil
	}
	var err error
	if m.replicaPool, err = newPool(ctx, m.Config.PostgresReplicaURL, connsMax); err != nil {
		return fmt.Errorf("-postgres-replica-url: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, replicaCheckTimeout)
	defer cancel()
	var standby bool
	if err := m.replicaPool.QueryRow(pctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		m.Logger.Warn("read replica unreachable at start: queries read from the primary until it answers", "err", err)
		return nil
	}
	if !standby {
		m.Logger.Warn("-postgres-replica-url is not a standby (pg_is_in_recovery false): queries read from it all the same")
	}
	if err := checkRole(ctx, m.replicaPool, "-postgres-replica-url", needReader); err != nil {
		return err
	}
	m.replicaChecked = true
	return nil
}

// queryService is the Service the query calls read through: the replica's,
// falling back to the primary's, or the primary's alone.
func (m *Main) queryService() *queries.Service {
	primary := queries.New(m.readPool, m.waiter).WithServed(m.balanceServer)
	if m.replicaPool == nil {
		return primary
	}
	// Not from memory on the replica's Service: its balances and its
	// statements stay one snapshot, the replica's, as the operator chose.
	return queries.New(m.replicaPool, nil).WithPrimary(primary, cmp.Or(m.Config.ReplicaFallbackAfter, ReplicaFallbackAfterDefault))
}

// watchReplica pings the replica every replicaCheckEvery until ctx ends,
// marking q's replica down while it does not answer. A replica down at
// start is checked for the reader's role at its first answer, and taken
// for down for good when its login lacks it (the start would have refused).
func (m *Main) watchReplica(ctx context.Context, q *queries.Service, up prometheus.Gauge) {
	t := time.NewTicker(replicaCheckEvery)
	defer t.Stop()
	wasDown, checked := false, m.replicaChecked
	for {
		pctx, cancel := context.WithTimeout(ctx, replicaCheckTimeout)
		err := m.replicaPool.Ping(pctx)
		if err == nil && !checked {
			if err = checkRole(pctx, m.replicaPool, "-postgres-replica-url", needReader); errors.Is(err, ErrRoleMissing) {
				m.Logger.Error("read replica refused: queries read from the primary", "err", err)
				q.SetReplicaDown(true)
				up.Set(0)
				cancel()
				return
			}
			checked = err == nil
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		down := err != nil
		q.SetReplicaDown(down)
		up.Set(gauge(!down))
		if down != wasDown {
			if down {
				m.Logger.Warn("read replica down: queries read from the primary", "err", err)
			} else {
				m.Logger.Info("read replica up: queries read from it again")
			}
			wasDown = down
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fromMemoryCounter counts the GetBalances calls q answered from memory.
func fromMemoryCounter(q *queries.Service) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_query_balances_from_memory_total",
		Help: "GetBalances calls answered from the memory of this process's movements projection, without reading PostgreSQL."},
		func() float64 { return float64(q.FromMemory()) })
}

// replicaMetrics registers the replica's gauges: whether it answers, and
// how many calls read from the primary instead.
func (m *Main) replicaMetrics(q *queries.Service) prometheus.Gauge {
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_replica_up",
		Help: "1 while the read replica (-postgres-replica-url) answers its pings."})
	m.registry.MustRegister(up, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_replica_fallbacks_total",
		Help: "Query calls that read from the primary: the replica was down or behind their min_position."},
		func() float64 { return float64(q.Fallbacks()) }))
	return up
}
