package httpapi_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/httpapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// slowBalances holds every GetBalances until release is closed (a
// min_position wait, a slow query); every other query answers at once.
type slowBalances struct {
	ledgerv1.UnimplementedQueryServiceServer
	release chan struct{}
	waiting sync.WaitGroup
}

func (s *slowBalances) GetBalances(ctx context.Context, _ *ledgerv1.GetBalancesRequest) (*ledgerv1.GetBalancesResponse, error) {
	s.waiting.Done()
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &ledgerv1.GetBalancesResponse{}, nil
}

func (s *slowBalances) GetProjectionStatus(context.Context, *ledgerv1.GetProjectionStatusRequest) (*ledgerv1.GetProjectionStatusResponse, error) {
	return &ledgerv1.GetProjectionStatusResponse{}, nil
}

// TestRESTCallsDoNotQueueBehindOthers: ledgerd's gRPC server lets a
// connection carry 256 calls at once (grpcStreamsPerConnMax, "more wait at
// the client"), which isolates gRPC clients from each other. The gateway
// made every REST call of every client on its one connection to that
// server, so 256 slow REST calls (one client's, or a burst) made every
// other REST call, of any client and any method, wait behind them, while a
// gRPC client on its own connection was answered at once. The gateway now
// takes its connections in turn from a few.
func TestRESTCallsDoNotQueueBehindOthers(t *testing.T) {
	const streamsPerConn = 256 // internal/daemon's grpcStreamsPerConnMax
	q := &slowBalances{release: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(streamsPerConn))
	ledgerv1.RegisterQueryServiceServer(srv, q)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	gw, err := httpapi.NewGateway(lis.Addr().String(), httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	hs := httptest.NewServer(gw)
	t.Cleanup(hs.Close)
	hs.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = streamsPerConn + 1
	defer close(q.release)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	q.waiting.Add(streamsPerConn)
	var slow sync.WaitGroup
	for range streamsPerConn {
		slow.Add(1)
		go func() {
			defer slow.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/ledgers/demo/balances?accounts=a&min_position=9", nil)
			if resp, err := hs.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	q.waiting.Wait() // 256 REST calls wait in the server

	// A gRPC client, on its own connection, is answered at once.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	if _, err := ledgerv1.NewQueryServiceClient(conn).GetProjectionStatus(gctx, &ledgerv1.GetProjectionStatusRequest{}); err != nil {
		t.Fatalf("gRPC GetProjectionStatus beside the slow calls: %v", err)
	}

	// Another REST client's call of another method.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", hs.URL+"/v1/projections", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("REST GET /v1/projections beside %d slow REST calls: %v after %v; over gRPC it answered at once",
			streamsPerConn, err, time.Since(start).Round(time.Millisecond))
	} else {
		resp.Body.Close()
	}
}
