package daemon

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/adapters/httpapi"
	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// shutdownGrace bounds how long Close waits for calls in flight.
const shutdownGrace = 10 * time.Second

// Main is a running ledgerd.
type Main struct {
	Config Config
	Logger *slog.Logger
	// Out receives the start-up banner; nil for none.
	Out io.Writer
	// Err receives the admin key that dev mode generates; nil: os.Stderr.
	Err io.Writer
	// TracerProvider, when set, receives ledgerd's spans (tests give one
	// with an in-memory exporter); nil: OTLP to Config.OTLPEndpoint when
	// set, else no tracing.
	TracerProvider trace.TracerProvider

	tracerProvider trace.TracerProvider // nil: tracing off
	tracer         trace.Tracer
	ownTracing     *sdktrace.TracerProvider // made here, flushed at close

	pg   *devpg.Cluster
	nats *natsbus.Embedded
	// pool is the writer's: the event store, leases, snapshots, ledgers.
	// The pools of the other database roles (postgres.go, openRolePools)
	// are pool itself unless their own URL is given.
	pool     *pgxpool.Pool
	projPool *pgxpool.Pool // projectors and rebuilds: the read models
	readPool *pgxpool.Pool // queries
	keysPool *pgxpool.Pool // API keys
	// replicaPool is the read replica's (-postgres-replica-url); nil when
	// queries read from the primary alone.
	replicaPool *pgxpool.Pool
	// replicaChecked is set once the replica's login was found to have the
	// reader's role (at start, or at its first answer when down at start).
	replicaChecked bool
	nc             *nats.Conn
	js             jetstream.JetStream
	store          *eventstore.Store
	keys           *apikeys.Store
	hooks          *webhooks.Store
	auth           *grpcapi.Auth // nil with auth off
	lease          *eventstore.Lease
	ledgers        *commands.Ledgers
	grpcSrv        *grpc.Server
	httpSrv        *http.Server
	gateway        *httpapi.Gateway
	grpcLis        net.Listener
	httpLis        net.Listener
	registry       *prometheus.Registry
	metrics        *metrics
	health         *healthWatch
	// readiness is /readyz's last reading of PostgreSQL (readyReading).
	readiness readyReading
	// adminKeyPath is the file dev mode wrote a new admin key to; "" if none.
	adminKeyPath string
	// anchoring signs the heads (nil: no anchor key); anchorBucket is
	// where it publishes them, which IntegrityService lists.
	anchoring    *workflows.Anchoring
	anchorBucket *natsbus.Anchors
	// dataDirLock is the data dir's flocked lock file while embedded
	// servers run in it (datadir.go).
	dataDirLock *os.File

	cancelWriters context.CancelFunc
	cancelReaders context.CancelFunc
	readersCtx    context.Context
	wg            sync.WaitGroup

	closeOnce sync.Once

	// mu guards the maps below. Lock order: commands.Ledgers.mu before mu.
	// The registry calls startReaders and stopReaders (which take mu) under
	// its own lock, so code holding mu never calls m.ledgers (it would
	// deadlock against a writer starting or retiring).
	mu     sync.Mutex
	relays map[string]*natsbus.Relay
	// runners holds each ledger's projection runners by projection name.
	runners map[string]map[string]*projections.Runner
	// readers holds what stops each ledger's relay and runners.
	readers map[string]*ledgerReaders
	// waking holds the ledgers a waiting query is starting the readers of.
	waking map[string]bool
	// alerters holds the alerter of each ledger whose writer runs here
	// (writesHere), or ran until its readers stop (ledgerAlerter).
	alerters map[string]*ledgerAlerter
	// elsewhere holds when this process last found a ledger's projector
	// lease held by another (leaseRetryAfter).
	elsewhere map[string]time.Time
	// quiet holds when a ledger's projections, not running here, were last
	// found caught up: its appends are not checked again for
	// leaseRetryAfter (onAppended).
	quiet map[string]time.Time
	// alertsSwept holds, by ledger, the position of the last alert not
	// raised for which the sweep started the ledger's writer
	// (sweepAlerts).
	alertsSwept map[string]int64

	// roles are Config.Roles, all three when none is set; nodeID names this
	// process in nodes (the registry, nodes.go); projLocks are its projector
	// leases; draining is set while an operator drains it.
	roles     Roles
	nodeID    string
	nodes     *eventstore.Nodes
	projLocks *eventstore.Locks
	draining  atomic.Bool
	// forwarder sends commands to the node that writes their ledger
	// (forward.go).
	forwarder *forwarder
}

// Run starts everything and returns once ledgerd serves; Close stops it.
//
// Errors: whatever prevents start-up (no PostgreSQL binaries, a port in use, a
// failed migration), wrapped with what was being started.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.relays, m.runners = map[string]*natsbus.Relay{}, map[string]map[string]*projections.Runner{}
	if err := m.lockDataDir(); err != nil {
		return err
	}
	m.readers, m.waking = map[string]*ledgerReaders{}, map[string]bool{}
	m.alerters, m.elsewhere = map[string]*ledgerAlerter{}, map[string]time.Time{}
	m.quiet, m.alertsSwept = map[string]time.Time{}, map[string]int64{}
	m.roles = m.Config.Roles.orAll()
	m.nodeID = cmp.Or(m.Config.NodeID, defaultNodeID(m.Config.GRPCAddr))
	if err := m.openPostgres(ctx); err != nil {
		return err
	}
	if err := m.openNATS(); err != nil {
		return err
	}
	m.store = eventstore.New(m.pool)
	m.keys = apikeys.New(m.keysPool, apikeys.Options{})
	m.hooks = webhooks.NewStore(m.projPool)
	if err := m.bootstrapKeys(ctx); err != nil {
		return err
	}
	// A ledgerd starts a ledger's writer on demand; the lease lets one write
	// each ledger at a time, the others stand by to take over (idle.go).
	m.lease = eventstore.NewLease(m.pool.Config().ConnConfig).WithNode(m.nodeID)
	m.projLocks = eventstore.NewLocks(m.projPool.Config().ConnConfig, m.nodeID)
	m.nodes = eventstore.NewNodes(m.pool)
	if err := m.startTracing(ctx); err != nil {
		return err
	}
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.metrics = newMetrics(m.registry)
	m.registry.MustRegister(m.natsConnectedGauge())
	m.registry.MustRegister(newLagCollector(queries.New(m.readPool, nil), m.Logger), newPlacementCollector(m))

	m.readersCtx, m.cancelReaders = context.WithCancel(context.Background())
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.keys.Run(m.readersCtx) }()
	writersCtx, cancelWriters := context.WithCancel(context.Background())
	m.cancelWriters = cancelWriters
	m.ledgers = commands.NewLedgers(writersCtx, m.store, commands.Options{
		Store:    m.store,
		Logger:   m.Logger,
		OnCommit: m.onCommit,
		OnAppend: m.metrics.onAppend,
		OnLease:  m.metrics.onLease,
		Tracer:   m.tracer,
		Lease:    commands.PostgresLeases(m.lease),
		Policy:   domain.Policy{EffectivePastMax: m.Config.EffectivePastMax, EffectiveFutureMax: m.Config.EffectiveFutureMax},

		SnapshotEvery: m.Config.SnapshotEvery,
		IdleAfter:     m.ledgerIdle(),
	}, 0, m.startReaders, m.stopReaders)
	m.ledgers.SetAdmit(m.admitWriter)
	m.forwarder = newForwarder(m)
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_commands_forwarded_total",
		Help: "Calls this node sent to the node that writes their ledger, or to the least-loaded writer node."},
		func() float64 { return float64(m.forwarder.forwarded.Load()) }))
	// No ledger starts at boot but those with work: timed holds to expire
	// (their writers), projections behind (their readers, until caught up).
	// Archived and importing ledgers take no commands: no writer.
	m.sweepLedgers(ctx)
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.runSweeps(m.readersCtx) }()
	if err := m.startAnchoring(); err != nil {
		return err
	}
	if m.roles.Projector {
		m.startWebhooks()
		m.wg.Add(2)
		go func() { defer m.wg.Done(); m.listenAppends(m.readersCtx) }()
		go func() { defer m.wg.Done(); m.sweepRetired(m.readersCtx) }()
	}
	if err := m.serve(); err != nil {
		return err
	}
	if err := m.register(ctx); err != nil {
		return err
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.heartbeats(m.readersCtx) }()
	m.banner()
	return nil
}

// Close stops ledgerd: it stops taking calls, lets the writers commit their
// batches in flight, stops the relays and projections, then the servers. It may
// be called more than once.
func (m *Main) Close() { m.closeOnce.Do(m.close) }

func (m *Main) close() {
	if m.health != nil {
		m.health.shutdown() // first: balancers stop sending before calls are refused
	}
	// HTTP first: REST calls in flight go through the gRPC server.
	if m.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		_ = m.httpSrv.Shutdown(ctx)
		cancel()
	}
	if m.gateway != nil {
		_ = m.gateway.Close()
	}
	if m.grpcSrv != nil {
		done := make(chan struct{})
		go func() { m.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownGrace):
			m.grpcSrv.Stop()
		}
	}
	if m.cancelWriters != nil {
		m.cancelWriters()
		m.ledgers.Wait()
	}
	if m.lease != nil {
		m.lease.Close()
	}
	if m.cancelReaders != nil {
		m.cancelReaders()
	}
	m.wg.Wait()
	if m.projLocks != nil {
		m.projLocks.Close()
	}
	if m.forwarder != nil {
		m.forwarder.close()
	}
	m.stopTracing()
	if m.nc != nil {
		m.nc.Close()
	}
	if m.nats != nil {
		m.nats.Shutdown()
	}
	m.closePools()
	if m.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := m.pg.Stop(ctx); err != nil {
			m.Logger.Error("stop PostgreSQL", "err", err)
		}
		cancel()
	}
	m.unlockDataDir()
}

// startWebhooks runs the webhook dispatcher: on the projector's pool, each
// subscription reading its ledger's stream as a projector does, whether or
// not the ledger's writer runs here (leases share the subscriptions among
// ledgerds).
func (m *Main) startWebhooks() {
	opts := m.Config.Webhooks
	opts.Logger = m.Logger
	streamOpts := m.streamOptions()
	d := webhooks.NewDispatcher(m.hooks, m.store, func(ledger string) webhooks.Source {
		return natsbus.NewSource(ledger, m.js, m.store, streamOpts, m.Logger)
	}, opts)
	m.wg.Add(1)
	go func() { defer m.wg.Done(); d.Run(m.readersCtx) }()
}
