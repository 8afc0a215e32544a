package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/devpg"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/adapters/httpapi"
	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
)

// grpcMsgMax bounds a gRPC message: 8,192 transfers of 64 postings fit.
const grpcMsgMax = 64 << 20

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

	pg       *devpg.Cluster
	nats     *natsbus.Embedded
	pool     *pgxpool.Pool
	nc       *nats.Conn
	js       jetstream.JetStream
	store    *eventstore.Store
	keys     *apikeys.Store
	lease    *eventstore.Lease
	ledgers  *commands.Ledgers
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	gateway  *httpapi.Gateway
	grpcLis  net.Listener
	httpLis  net.Listener
	registry *prometheus.Registry
	metrics  *metrics
	// adminKeyPath is the file dev mode wrote a new admin key to; "" if none.
	adminKeyPath string

	cancelWriters context.CancelFunc
	cancelReaders context.CancelFunc
	readersCtx    context.Context
	wg            sync.WaitGroup

	closeOnce sync.Once

	mu     sync.Mutex
	relays map[string]*natsbus.Relay
	// runners holds each ledger's projection runners by projection name.
	runners map[string]map[string]*projections.Runner
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
	if err := m.openPostgres(ctx); err != nil {
		return err
	}
	if err := m.openNATS(); err != nil {
		return err
	}
	m.store = eventstore.New(m.pool)
	m.keys = apikeys.New(m.pool, apikeys.Options{})
	if err := m.bootstrapKeys(ctx); err != nil {
		return err
	}
	// Every ledgerd runs a writer for every ledger; the lease lets one write
	// each ledger at a time, the others stand by to take over.
	m.lease = eventstore.NewLease(m.pool.Config().ConnConfig)
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.metrics = newMetrics(m.registry)
	m.registry.MustRegister(newLagCollector(queries.New(m.pool, nil), m.Logger))

	m.readersCtx, m.cancelReaders = context.WithCancel(context.Background())
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.keys.Run(m.readersCtx) }()
	writersCtx, cancelWriters := context.WithCancel(context.Background())
	m.cancelWriters = cancelWriters
	m.ledgers = commands.NewLedgers(writersCtx, commands.Options{
		Store:    m.store,
		Logger:   m.Logger,
		OnCommit: m.onCommit,
		Lease:    commands.PostgresLeases(m.lease),
		Policy:   domain.Policy{EffectivePastMax: m.Config.EffectivePastMax, EffectiveFutureMax: m.Config.EffectiveFutureMax},

		SnapshotEvery: m.Config.SnapshotEvery,
	}, 0, m.startReaders)
	names, err := m.store.Ledgers(ctx)
	if err != nil {
		return fmt.Errorf("list ledgers: %w", err)
	}
	for _, name := range names {
		if _, err := m.ledgers.Create(name); err != nil {
			return fmt.Errorf("start ledger %s: %w", name, err)
		}
	}
	if err := m.serve(); err != nil {
		return err
	}
	m.banner()
	return nil
}

func (m *Main) openPostgres(ctx context.Context) error {
	url := m.Config.PostgresURL
	if url == "" {
		// Searchable by others: as root, the cluster runs as the postgres user,
		// which must reach its own directory below this one.
		if err := os.MkdirAll(m.Config.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		m.Logger.Info("starting the private PostgreSQL cluster", "dir", filepath.Join(m.Config.DataDir, "postgres"))
		c, err := devpg.Start(ctx, devpg.Options{
			Dir:  filepath.Join(m.Config.DataDir, "postgres"),
			Logf: func(f string, a ...any) { m.Logger.Info(fmt.Sprintf(f, a...)) },
		})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		m.pg, url = c, c.URL()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	cfg.MaxConns = int32(max(m.Config.PostgresConnsMax, 4))
	if m.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := m.pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := eventstore.Migrate(ctx, m.pool); err != nil {
		return err
	}
	if err := apikeys.Migrate(ctx, m.pool); err != nil {
		return err
	}
	return projections.Migrate(ctx, m.pool)
}

func (m *Main) openNATS() error {
	url := m.Config.NATSURL
	if url == "" {
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{
			StoreDir: filepath.Join(m.Config.DataDir, "nats"),
			Logf:     func(f string, a ...any) { m.Logger.Debug(fmt.Sprintf(f, a...)) },
		})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		m.nats, url = e, e.ClientURL()
	}
	nc, err := nats.Connect(url, nats.Name("ledgerd"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	m.nc = nc
	if m.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

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

func (m *Main) serve() error {
	tlsCfg, err := m.serverTLS()
	if err != nil {
		return err
	}
	if m.grpcLis, err = net.Listen("tcp", m.Config.GRPCAddr); err != nil {
		return fmt.Errorf("gRPC listen: %w", err)
	}
	if m.httpLis, err = net.Listen("tcp", m.Config.HTTPAddr); err != nil {
		return fmt.Errorf("HTTP listen: %w", err)
	}
	m.grpcSrv = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(grpcMsgMax), grpc.MaxSendMsgSize(grpcMsgMax)},
		m.grpcOptions(tlsCfg)...)...)
	ledgerv1.RegisterCommandServiceServer(m.grpcSrv, grpcapi.NewCommandServer(m.ledgers, m.Logger))
	ledgerv1.RegisterQueryServiceServer(m.grpcSrv, grpcapi.NewQueryServer(queries.New(m.pool, m.waiter), m.ledgers))
	ledgerv1.RegisterAuditServiceServer(m.grpcSrv, grpcapi.NewAuditServer(m.store, m.ledgers, m.Logger))
	ledgerv1.RegisterReconciliationServiceServer(m.grpcSrv, grpcapi.NewReconciliationServer(m.ledgers, queries.New(m.pool, m.waiter), m.Logger))
	ledgerv1.RegisterAdminServiceServer(m.grpcSrv, grpcapi.NewAdminServer(m.pool, m.store, m.keys, m.Logger))
	reflection.Register(m.grpcSrv)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", m.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	// REST/JSON: grpc-gateway calling our own gRPC listener (see adapters/httpapi).
	if m.gateway, err = httpapi.NewGateway(dialable(m.GRPCAddr()), httpapi.Options{DialOptions: gatewayDialOptions(tlsCfg)}); err != nil {
		return err
	}
	mux.Handle("/v1/", m.gateway)
	if m.Config.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	m.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: tlsCfg}

	m.wg.Add(2)
	go func() { defer m.wg.Done(); _ = m.grpcSrv.Serve(m.grpcLis) }()
	go func() {
		defer m.wg.Done()
		serve := m.httpSrv.Serve
		if tlsCfg != nil {
			serve = func(lis net.Listener) error { return m.httpSrv.ServeTLS(lis, "", "") }
		}
		if err := serve(m.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("HTTP server", "err", err)
		}
	}()
	return nil
}

// ready answers 200 when PostgreSQL and NATS are reachable.
func (m *Main) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := m.pool.Ping(ctx); err != nil {
		http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !m.nc.IsConnected() {
		http.Error(w, "nats: "+m.nc.Status().String(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// GRPCAddr is the address gRPC listens on (useful with ":0").
func (m *Main) GRPCAddr() string { return m.grpcLis.Addr().String() }

// HTTPAddr is the address HTTP listens on.
func (m *Main) HTTPAddr() string { return m.httpLis.Addr().String() }

func (m *Main) banner() {
	if m.Out == nil {
		return
	}
	fmt.Fprintf(m.Out, `
ledgerd is ready.
  gRPC  %s   (reflection on: grpcurl -plaintext %s list)
  HTTP  http://%s  (REST/JSON under /v1/, /healthz /readyz /metrics)
%s
Try it:
  go run ./cmd/ledgerctl asset define --ledger demo USD 2
  go run ./cmd/ledgerctl account open --ledger demo --asset USD alice bob
  go run ./cmd/ledgerctl transfer --ledger demo --id t1 --from alice --to bob --amount 10.00 --asset USD
  go run ./cmd/ledgerctl balance --ledger demo alice bob

`, dialable(m.GRPCAddr()), dialable(m.GRPCAddr()), dialable(m.HTTPAddr()), m.authBanner())
}

// dialable turns a wildcard listen address (":7070", "[::]:7070") into one a
// client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// Close stops ledgerd: it stops taking calls, lets the writers commit their
// batches in flight, stops the relays and projections, then the servers. It may
// be called more than once.
func (m *Main) Close() { m.closeOnce.Do(m.close) }

func (m *Main) close() {
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
	if m.nc != nil {
		m.nc.Close()
	}
	if m.nats != nil {
		m.nats.Shutdown()
	}
	if m.pool != nil {
		m.pool.Close()
	}
	if m.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := m.pg.Stop(ctx); err != nil {
			m.Logger.Error("stop PostgreSQL", "err", err)
		}
		cancel()
	}
}
