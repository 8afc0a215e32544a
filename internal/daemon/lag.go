package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/queries"
)

// lagScrapeTimeout bounds the query a scrape of the projection lag runs.
const lagScrapeTimeout = 2 * time.Second

// lagCollector exports every projection's lag, read from PostgreSQL on each
// scrape with one query: checkpoints and heads live there, so the lag of a
// projection another process runs is seen too.
type lagCollector struct {
	q                  *queries.Service
	logger             *slog.Logger
	positions, seconds *prometheus.Desc
}

func newLagCollector(q *queries.Service, logger *slog.Logger) *lagCollector {
	labels := []string{"ledger", "projection"}
	return &lagCollector{q: q, logger: logger,
		positions: prometheus.NewDesc("ledger_projection_lag_positions",
			"Events of the ledger's log the projection has not applied yet.", labels, nil),
		seconds: prometheus.NewDesc("ledger_projection_lag_seconds",
			"Recorded time of the ledger's last event less that of the projection's checkpoint.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.positions
	ch <- c.seconds
}

// Collect implements prometheus.Collector. When the query fails the gauges
// are left out of this scrape, and the rest of /metrics is still served.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagScrapeTimeout)
	defer cancel()
	statuses, err := c.q.GetProjectionStatus(ctx, "")
	if err != nil {
		c.logger.Warn("projection lag metrics left out of a scrape", "err", err)
		return
	}
	for _, s := range statuses {
		ch <- prometheus.MustNewConstMetric(c.positions, prometheus.GaugeValue, float64(s.LagPositions), s.Ledger, s.Name)
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.GaugeValue, s.LagSeconds, s.Ledger, s.Name)
	}
}
