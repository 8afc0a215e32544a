package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/queries"
)

// lagScrapeTimeout bounds the query a scrape of the projection lag runs.
const lagScrapeTimeout = 2 * time.Second

// lagFreshFor is how long a scrape's reading of the lag serves the next
// scrapes: /metrics needs no key, and each reading is a query over every
// ledger, so a flood of scrapes costs PostgreSQL one query a second, not
// one each.
const lagFreshFor = time.Second

// lagCollector exports every projection's lag, read from PostgreSQL with
// one query (at most one a lagFreshFor, one at a time): checkpoints and
// heads live there, so the lag of a projection another process runs is
// seen too.
type lagCollector struct {
	read               func(context.Context) ([]queries.ProjectionStatus, error)
	logger             *slog.Logger
	positions, seconds *prometheus.Desc
	// chainBroken and streamDiverged are 1 while a projection stays stopped
	// on an event it refused, or a ledger's stream is found ahead of the
	// log or different from it; 0 otherwise.
	chainBroken, streamDiverged *prometheus.Desc

	// mu makes scrapes take turns; last (or lastErr, a reading that
	// failed) was read at readAt, and serves for freshFor (lagFreshFor).
	mu       sync.Mutex
	last     []queries.ProjectionStatus
	lastErr  error
	readAt   time.Time
	freshFor time.Duration
}

func newLagCollector(q *queries.Service, logger *slog.Logger) *lagCollector {
	labels := []string{"ledger", "projection"}
	read := func(ctx context.Context) ([]queries.ProjectionStatus, error) { return q.GetProjectionStatus(ctx, "") }
	return &lagCollector{read: read, logger: logger, freshFor: lagFreshFor,
		positions: prometheus.NewDesc("ledger_projection_lag_positions",
			"Events of the ledger's log the projection has not applied yet.", labels, nil),
		seconds: prometheus.NewDesc("ledger_projection_lag_seconds",
			"Recorded time of the ledger's last event less that of the projection's checkpoint.", labels, nil),
		chainBroken: prometheus.NewDesc("ledger_projection_chain_broken",
			"1 while the projection is stopped on an event that does not continue the hash chain or is not the log's.", labels, nil),
		streamDiverged: prometheus.NewDesc("ledger_stream_diverged",
			"1 while the ledger's stream is ahead of the log or different from it and the relay publishes nothing on top.",
			[]string{"ledger"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.positions
	ch <- c.seconds
	ch <- c.chainBroken
	ch <- c.streamDiverged
}

// Collect implements prometheus.Collector. When the query fails the gauges
// are left out of this scrape, and the rest of /metrics is still served.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	statuses, err := c.statuses()
	if err != nil {
		c.logger.Warn("projection lag metrics left out of a scrape", "err", err)
		return
	}
	diverged := map[string]bool{}
	for _, s := range statuses {
		ch <- prometheus.MustNewConstMetric(c.positions, prometheus.GaugeValue, float64(s.LagPositions), s.Ledger, s.Name)
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.GaugeValue, s.LagSeconds, s.Ledger, s.Name)
		ch <- prometheus.MustNewConstMetric(c.chainBroken, prometheus.GaugeValue, gauge(s.State == queries.StateChainBroken), s.Ledger, s.Name)
		diverged[s.Ledger] = s.StreamFault != ""
	}
	for ledger, d := range diverged {
		ch <- prometheus.MustNewConstMetric(c.streamDiverged, prometheus.GaugeValue, gauge(d), ledger)
	}
}

// statuses returns the last reading if it is fresh, else reads again.
// Scrapes take turns: those that came during a reading get it, and so do
// those after a reading that failed.
func (c *lagCollector) statuses() ([]queries.ProjectionStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.readAt.IsZero() && time.Since(c.readAt) < c.freshFor {
		return c.last, c.lastErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), lagScrapeTimeout)
	defer cancel()
	// A failure serves as long: while PostgreSQL is slow, the scrapes
	// queued behind this one do not each wait out a query of their own.
	c.last, c.lastErr = c.read(ctx)
	c.readAt = time.Now()
	return c.last, c.lastErr
}

func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
