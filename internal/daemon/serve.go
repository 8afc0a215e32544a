package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/adapters/httpapi"
	"github.com/ledgerd/ledger/adapters/httpapi/console"
	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/queries"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// grpcMsgMax bounds a gRPC message sent (grpcapi.SendMax, which clients
// import). Messages received are bounded per method (grpcapi.RecvMax).
const grpcMsgMax = grpcapi.SendMax

// Limits against hostile clients, besides those of grpcapi (key checked
// before a message is read, receive bounds per method, bytes in flight,
// failed authentications) and connLimitListener. docs/operations.md lists
// them all.
const (
	// grpcHeaderListMax bounds a gRPC request's header list (HTTP/2
	// SETTINGS_MAX_HEADER_LIST_SIZE), which the server reads before any key
	// is checked: grpc-go's default, 16 MiB, let a connection without a key
	// make it buffer a 16 MiB header value. What a call legitimately
	// carries is a few hundred bytes (the API key, W3C trace context with
	// its 8 KiB of baggage at most, grpc-timeout, user-agent); a header
	// string over the bound closes the connection before it is buffered.
	grpcHeaderListMax = 64 << 10
	// httpHeaderBytesMax bounds a REST request's line and headers (net/http
	// allows 1 MiB by default). Half of grpcHeaderListMax, so that what the
	// gateway forwards as gRPC metadata (Authorization, Grpc-Metadata-*)
	// always fits in the gRPC bound instead of failing the call.
	httpHeaderBytesMax = grpcHeaderListMax / 2
	// grpcStreamsPerConnMax bounds the calls open at once on one gRPC
	// connection (HTTP/2 MaxConcurrentStreams); more wait at the client.
	grpcStreamsPerConnMax = 256
	// grpcHandshakeTimeout bounds a new gRPC connection's TLS handshake and
	// HTTP/2 preface: a connection that sends nothing is closed after it.
	grpcHandshakeTimeout = 10 * time.Second
	// grpcConnIdleMax closes a gRPC connection without a call for this long
	// (clients reconnect transparently).
	grpcConnIdleMax = 5 * time.Minute
	// grpcKeepaliveTime is how long a connection may be silent before the
	// server pings it, and grpcKeepaliveTimeout how long the ping's answer
	// may take before the connection is closed: a dead peer is found out.
	grpcKeepaliveTime    = 2 * time.Minute
	grpcKeepaliveTimeout = 20 * time.Second
	// grpcClientPingMin is the shortest interval between a client's
	// keepalive pings; a client pinging faster is disconnected (GOAWAY).
	grpcClientPingMin = 10 * time.Second
	// httpReadHeaderTimeout bounds reading a request's headers.
	httpReadHeaderTimeout = 5 * time.Second
	// httpReadTimeout bounds reading a whole request, body included: 64 MiB
	// at 2 Mbit/s. A log import (a stream of any length) by a key that may
	// import is exempt (adapters/httpapi).
	httpReadTimeout = 5 * time.Minute
	// httpIdleTimeout closes a keep-alive connection without a request for
	// this long. There is no write timeout: ReadEvents and
	// RebuildProjection stream their answers over REST for as long as they
	// take, to callers that authenticated first.
	httpIdleTimeout = 2 * time.Minute
)

func (m *Main) serve() error {
	tlsCfg, err := m.serverTLS()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", m.Config.GRPCAddr)
	if err != nil {
		return fmt.Errorf("gRPC listen: %w", err)
	}
	grpcConns := newConnLimitListener(lis, m.Config.ConnsMax)
	m.grpcLis = grpcConns
	if lis, err = net.Listen("tcp", m.Config.HTTPAddr); err != nil {
		return fmt.Errorf("HTTP listen: %w", err)
	}
	httpConns := newConnLimitListener(lis, m.Config.ConnsMax)
	m.httpLis = httpConns
	if !m.Config.AuthDisabled {
		m.auth = grpcapi.NewAuth(m.keys, m.Logger)
		m.auth.OnAuthenticated = grpcConns.authenticated
		m.auth.OnUnauthenticated = grpcConns.refused
		m.auth.OnRefused = func(code codes.Code) { m.metrics.refused.WithLabelValues(code.String()).Inc() }
	}
	m.grpcSrv = grpc.NewServer(m.grpcServerOptions(tlsCfg)...)
	commandSrv := grpcapi.NewCommandServer(m.ledgers, m.Logger)
	commandSrv.OnPeriodClosed(m.anchorPeriodClose)
	ledgerv1.RegisterCommandServiceServer(m.grpcSrv, commandSrv)
	reads := m.queryService()
	m.registry.MustRegister(fromMemoryCounter(reads))
	if m.replicaPool != nil {
		up := m.replicaMetrics(reads)
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.watchReplica(m.readersCtx, reads, up) }()
	}
	ledgerv1.RegisterMonitoringServiceServer(m.grpcSrv, grpcapi.NewMonitoringServer(commandSrv, reads, m.store))
	ledgerv1.RegisterQueryServiceServer(m.grpcSrv, grpcapi.NewQueryServer(reads, m.ledgers))
	ledgerv1.RegisterAuditServiceServer(m.grpcSrv, grpcapi.NewAuditServer(m.store, reads, m.ledgers, m.Logger))
	ledgerv1.RegisterReconciliationServiceServer(m.grpcSrv, grpcapi.NewReconciliationServer(m.ledgers, reads, m.Logger))
	// After a rebuild, the ledger's live projections start again from the
	// rebuilt rows: what they held in memory came from the rows replaced.
	ledgerv1.RegisterAdminServiceServer(m.grpcSrv, grpcapi.NewAdminServer(m.projPool, m.store, m.keys, m.ledgers, m.Logger).
		WithRebuilt(m.announceRebuilt).WithStreams(restartingStreams{natsbus.NewStreams(m.js, m.streamOptions()), m}).
		WithNodes(m.nodes, reads.ProjectionLags))
	var anchors grpcapi.AnchorLister
	if m.anchorBucket != nil {
		anchors = m.anchorBucket
	}
	ledgerv1.RegisterIntegrityServiceServer(m.grpcSrv, grpcapi.NewIntegrityServer(anchors))
	ledgerv1.RegisterWebhookServiceServer(m.grpcSrv, grpcapi.NewWebhookServer(m.hooks))
	// Reflection and health need no key: their requests are read bounded
	// (grpcapi.OpenRecvMax), their streams counted (OpenStreamsMax).
	open := grpcapi.NewOpenServices(m.grpcSrv)
	reflection.Register(open)
	m.health = registerHealth(m.readersCtx, open, m.pool.Ping)
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.health.run(m.readersCtx) }()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", m.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	// REST/JSON: grpc-gateway calling our own gRPC listener (see adapters/httpapi).
	gwOpts := httpapi.Options{DialOptions: append(gatewayDialOptions(tlsCfg), m.tracingDialOptions()...)}
	if m.auth != nil {
		gwOpts.Authorize = func(r *http.Request, method string) (string, error) {
			key, err := m.auth.AuthenticateFor(r.Context(), r.RemoteAddr, r.Header.Values("Authorization"), method)
			if err != nil {
				// Refused before its body is read, by its key or its
				// method's role, as TapHandle refuses a gRPC call:
				// counted with those.
				m.auth.OnRefused(status.Code(err))
				httpConns.refusedCall(r.RemoteAddr, r.Header.Values("Authorization"), err)
				return "", err
			}
			httpConns.authenticated(r.RemoteAddr, key.ID)
			// The body takes its room in this key's share, as the gRPC
			// server's receive budget charges a call to the key TapHandle
			// found.
			return key.ID, nil
		}
	}
	if m.gateway, err = httpapi.NewGateway(dialable(m.GRPCAddr()), gwOpts); err != nil {
		return err
	}
	mux.Handle("/v1/", m.gateway)
	if m.Config.Console {
		c := m.console(httpConns)
		mux.Handle(strings.TrimSuffix(console.Prefix, "/"), c)
		mux.Handle(console.Prefix, c)
	}
	if m.Config.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	m.httpSrv = &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout: httpReadTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpHeaderBytesMax}

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

// console is the operator console's handler (-console). Its whoami checks a
// key as the REST gateway does: the same failure counting, and a key that
// passes marks its connection authenticated.
func (m *Main) console(conns *connLimitListener) http.Handler {
	var opts console.Options
	if m.auth != nil {
		opts.Whoami = func(r *http.Request) (console.Identity, error) {
			k, err := m.auth.Authenticate(r.Context(), r.RemoteAddr, r.Header.Values("Authorization"))
			if err != nil {
				conns.refusedCall(r.RemoteAddr, r.Header.Values("Authorization"), err)
				return console.Identity{}, err
			}
			conns.authenticated(r.RemoteAddr, k.ID)
			id := console.Identity{ID: k.ID, Roles: make([]string, len(k.Roles)), Ledgers: k.Ledgers}
			for i, role := range k.Roles {
				id.Roles[i] = string(role)
			}
			return id, nil
		}
	}
	return console.Handler(opts)
}

// grpcServerOptions are all the gRPC server's options, in one place.
func (m *Main) grpcServerOptions(tlsCfg *tls.Config) []grpc.ServerOption {
	budget := grpcapi.NewRecvBudget(grpcapi.RecvBytesInFlightMax)
	m.registry.MustRegister(recvBudgetCollectors(budget)...)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(grpcapi.RecvMaxLarge),
		grpc.MaxSendMsgSize(grpcMsgMax),
		grpc.StatsHandler(budget),
		grpc.MaxConcurrentStreams(grpcStreamsPerConnMax),
		grpc.MaxHeaderListSize(grpcHeaderListMax),
		grpc.ConnectionTimeout(grpcHandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: grpcConnIdleMax,
			Time: grpcKeepaliveTime, Timeout: grpcKeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcClientPingMin, PermitWithoutStream: true}),
	}
	if m.auth != nil {
		opts = append(opts, grpc.InTapHandle(m.auth.TapHandle))
	}
	opts = append(opts, m.tracingServerOptions()...)
	opts = append(opts, m.grpcOptions(tlsCfg, budget)...)
	// After the metrics and auth interceptors: an undecodable request is
	// counted, and authenticated, before it is refused.
	opts = append(opts, grpcapi.DecodeOptions()...)
	// Last: only a request that decodes, with a valid ledger name, is
	// forwarded to another node.
	return append(opts, grpc.ChainUnaryInterceptor(m.forwarder.unary))
}

// readyCheckTimeout bounds /readyz's ping of PostgreSQL (and its query of
// the read side's faults).
const readyCheckTimeout = 2 * time.Second

// readyFreshFor is how long /readyz serves a reading, failed or not:
// anyone may ask /readyz, and without it each request cost PostgreSQL a
// ping and a query, on the pools commands and queries use.
const readyFreshFor = 1 * time.Second

// readiness is one reading of what /readyz tells: PostgreSQL's answer to a
// ping, and, when it answered, the read side's faults.
type readiness struct {
	pingErr   error
	faults    []queries.Fault
	more      bool
	faultsErr error
}

// readyReading is the last readiness read, served for readyFreshFor.
// Requests take turns: those that come during a reading get it.
type readyReading struct {
	mu   sync.Mutex
	at   time.Time
	last readiness
}

// get returns the last reading if it is fresh, else reads one with read.
func (c *readyReading) get(read func() readiness) readiness {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= readyFreshFor {
		c.last, c.at = read(), time.Now()
	}
	return c.last
}

// ready answers 200 when PostgreSQL is reachable, saying what waits if NATS
// is not. What is wrong with PostgreSQL is told in detail (the driver's
// error: user, database, host or socket) only to an admin key: anyone may
// ask /readyz.
func (m *Main) ready(w http.ResponseWriter, r *http.Request) {
	reading := m.readiness.get(m.readReadiness)
	if err := reading.pingErr; err != nil {
		msg := "postgres: unreachable"
		if m.readyDetail(r) {
			msg = "postgres: " + err.Error()
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	// Commands and queries need only PostgreSQL: NATS down, or a read side
	// stopped on an integrity fault, is a detail (the metrics alert on it).
	out := "ready\n"
	if waiting := m.natsWaiting(); waiting != "" {
		out += waiting + "\n"
	}
	out += m.integrityDetail(reading, r)
	_, _ = io.WriteString(w, out)
}

// readReadiness pings PostgreSQL and, when it answers, reads the read
// side's faults, for /readyz.
func (m *Main) readReadiness() readiness {
	ctx, cancel := context.WithTimeout(context.Background(), readyCheckTimeout)
	defer cancel()
	var rd readiness
	if rd.pingErr = m.pool.Ping(ctx); rd.pingErr == nil {
		rd.faults, rd.more, rd.faultsErr = queries.New(m.readPool, nil).Faults(ctx)
	}
	return rd
}

// integrityDetail describes, for /readyz, the read side's faults: how many
// to anyone, which (ledger, projection, reason) to an admin key; "" when
// there are none.
func (m *Main) integrityDetail(rd readiness, r *http.Request) string {
	faults, more, err := rd.faults, rd.more, rd.faultsErr
	switch {
	case err != nil:
		m.Logger.Warn("/readyz: read side faults not read", "err", err)
		return "integrity: unknown (the faults could not be read)\n"
	case len(faults) == 0:
		return ""
	case !m.readyDetail(r):
		n := strconv.Itoa(len(faults))
		if more {
			n += "+"
		}
		return "integrity: " + n + " read side fault(s): projections stopped or streams diverged from the log " +
			"(ask with an admin key for which; see ledgerctl projections status)\n"
	}
	var b strings.Builder
	for _, f := range faults {
		what := "projection " + f.Projection
		if f.Projection == "" {
			what = "stream"
		}
		fmt.Fprintf(&b, "integrity: ledger %s %s: %s\n", f.Ledger, what, f.Reason)
	}
	if more {
		b.WriteString("integrity: and more\n")
	}
	return b.String()
}

// readyDetail says whether r carries an admin key of every ledger (or auth
// is off): the detail names every ledger's faults, and the database's
// errors, which a key scoped to some ledgers may not see.
func (m *Main) readyDetail(r *http.Request) bool {
	if m.auth == nil {
		return true
	}
	if r.Header.Get("Authorization") == "" {
		return false
	}
	k, err := m.auth.Authenticate(r.Context(), r.RemoteAddr, r.Header.Values("Authorization"))
	return err == nil && k.Has(apikeys.RoleAdmin) && k.AllLedgers()
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
%s%s
Try it (make build, or make run, puts ledgerctl in bin/):
  bin/ledgerctl asset define --ledger demo USD 2
  bin/ledgerctl account open --ledger demo --asset USD alice bob
  bin/ledgerctl transfer --ledger demo --id t1 --from alice --to bob --amount 10.00 --asset USD
  bin/ledgerctl balance --ledger demo alice bob

`, dialable(m.GRPCAddr()), dialable(m.GRPCAddr()), dialable(m.HTTPAddr()), m.consoleBanner(), m.authBanner())
}

// consoleBanner is the banner's line about the console; "" when it is off.
func (m *Main) consoleBanner() string {
	if !m.Config.Console {
		return ""
	}
	scheme := "http"
	if m.Config.TLSCert != "" {
		scheme = "https"
	}
	return "  console " + scheme + "://" + dialable(m.HTTPAddr()) + console.Prefix + "  (sign in with an API key)\n"
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
