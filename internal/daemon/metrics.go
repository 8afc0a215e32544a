package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/commands"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics are ledgerd's own Prometheus metrics.
type metrics struct {
	commits   *prometheus.CounterVec
	committed *prometheus.CounterVec
	calls     *prometheus.HistogramVec
	// refused counts the calls refused before their message was read (no
	// valid key, or a role the key lacks), by code only: their method names
	// come from unauthenticated callers and would make labels unbounded.
	refused *prometheus.CounterVec
	// appends and appendEvents have no ledger label: a histogram per ledger
	// would multiply its buckets by the ledgers.
	appends       *prometheus.HistogramVec
	appendEvents  prometheus.Histogram
	writerWriting *prometheus.GaugeVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_commits_total", Help: "Batches committed to the event store, per ledger.",
		}, []string{"ledger"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_events_committed_total", Help: "Events committed to the event store, per ledger.",
		}, []string{"ledger"}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_grpc_request_duration_seconds", Help: "gRPC call latency by method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"method", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_grpc_refused_before_read_total", Help: "gRPC and REST calls refused from their headers (key or role), by status code.",
		}, []string{"code"}),
		appends: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_append_duration_seconds", Help: "Time of one append of a batch to the event store (the commit latency), by result (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"result"}),
		appendEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledger_append_events", Help: "Events in one append of a batch to the event store (the batch size).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		writerWriting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledger_writer_writing", Help: "Per running writer of a ledger: 1 while it holds the ledger's lease and writes, 0 while it waits for the lease (another process holds it, or PostgreSQL cannot be asked) and refuses commands.",
		}, []string{"ledger"}),
	}
	r.MustRegister(m.commits, m.committed, m.calls, m.refused, m.appends, m.appendEvents, m.writerWriting)
	return m
}

func (m *metrics) onAppend(_ string, events int, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.appends.WithLabelValues(result).Observe(took.Seconds())
	m.appendEvents.Observe(float64(events))
}

// onLease follows a writer's state; a stopped writer's series goes, so that
// ledgers gone idle leave no gauge behind.
func (m *metrics) onLease(ledger string, s commands.WriterState) {
	switch s {
	case commands.WriterWriting:
		m.writerWriting.WithLabelValues(ledger).Set(1)
	case commands.WriterWaiting:
		m.writerWriting.WithLabelValues(ledger).Set(0)
	default:
		m.writerWriting.DeleteLabelValues(ledger)
	}
}

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

// streamInterceptor counts a streaming call (ReadEvents, ImportEvents,
// RebuildProjection) like a unary one, its duration from open to end.
func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return err
}

// recvBudgetCollectors are the gauges of the budget of request bytes in
// flight: what it holds now (each message being received counts the
// process-wide bound, see grpcapi.RecvBudget), and what was read.
func recvBudgetCollectors(b *grpcapi.RecvBudget) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledger_grpc_recv_reserved_bytes",
			Help: "Request bytes reserved by the gRPC calls whose message is being received (64 MiB each, whatever the method).",
		}, func() float64 { return float64(b.Reserved()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ledger_grpc_recv_bytes_total",
			Help: "Bytes of gRPC request messages read (wire length), refused ones included.",
		}, func() float64 { return float64(b.Received()) }),
	}
}
