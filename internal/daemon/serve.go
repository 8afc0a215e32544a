package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/adapters/httpapi"
	"github.com/ledgerd/ledger/queries"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// grpcMsgMax bounds a gRPC message: 8,192 transfers of 64 postings fit.
const grpcMsgMax = 64 << 20

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
	ledgerv1.RegisterAdminServiceServer(m.grpcSrv, grpcapi.NewAdminServer(m.pool, m.store, m.keys, m.ledgers, m.Logger))
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
