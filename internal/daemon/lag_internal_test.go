package daemon

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

// TestLagReadAtMostOnceASecond: /metrics needs no key, and the lag is a
// query over every ledger: scrapes within freshFor (lagFreshFor: a second)
// of a reading, and those that come during one, are served that reading; a
// later scrape reads again.
func TestLagReadAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	c := newLagCollector(queries.New(pool, nil), nil)
	c.freshFor = time.Hour // a slow box's scheduling must not age the reading
	var reads atomic.Int64
	read := c.read
	c.read = func(ctx context.Context) ([]queries.ProjectionStatus, error) {
		reads.Add(1)
		time.Sleep(50 * time.Millisecond) // a reading others come during
		return read(ctx)
	}
	scrape := func() {
		ch := make(chan prometheus.Metric, 64)
		c.Collect(ch)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(scrape)
	}
	wg.Wait()
	scrape()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d readings for 9 scrapes within a second, want 1", n)
	}
	c.mu.Lock()
	c.readAt = time.Now().Add(-c.freshFor) // as it is a freshFor later
	c.mu.Unlock()
	scrape()
	if n := reads.Load(); n != 2 {
		t.Errorf("%d readings after the first went stale, want 2", n)
	}
}

// TestLagFailedReadingServesToo: a reading that failed (PostgreSQL slow,
// its query past lagScrapeTimeout) serves the scrapes of the next
// freshFor as a success does: they leave the gauges out without each
// waiting out a query of its own.
func TestLagFailedReadingServesToo(t *testing.T) {
	t.Parallel()
	c := newLagCollector(nil, nil)
	c.freshFor = time.Hour
	var reads atomic.Int64
	c.read = func(context.Context) ([]queries.ProjectionStatus, error) {
		reads.Add(1)
		return nil, context.DeadlineExceeded
	}
	for range 3 {
		if _, err := c.statuses(); err == nil {
			t.Fatal("a failed reading served as a success")
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d readings for 3 scrapes after a failure, want 1", n)
	}
}
