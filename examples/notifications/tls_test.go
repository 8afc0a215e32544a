package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestAuditorKeyGoesOverTLSUnlessToldOtherwise: the service reads from
// ledgerd (-ledgerd, NOTIFY_API_KEY, an auditor key) and confirms every
// batch against the log. It dialled without TLS, offering no way to ask
// for it: the key went in clear text to whatever address -ledgerd named.
// It now speaks TLS (the system's CAs, or -ledgerd-ca's), so a plaintext
// listener standing in for ledgerd never sees the key, and plaintext only
// with -ledgerd-insecure, when the same listener does.
func TestAuditorKeyGoesOverTLSUnlessToldOtherwise(t *testing.T) {
	t.Parallel()
	l := ledgerdtest.Start(t)
	ledger := testenv.Name(t)
	l.Setup(t, ledger, 2)
	l.Transfers(t, ledger, ledgerdtest.Transfer("t1", "bank", ledgerdtest.UserAccount(1), "1.00"))

	var (
		mu   sync.Mutex
		seen []string
	)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(stream.Context())
		mu.Lock()
		seen = append(seen, md.Get("authorization")...)
		mu.Unlock()
		return status.Error(codes.Unavailable, "not ledgerd")
	}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	const key = "lk_0123456789ab_thisistheauditorssecret"
	keySeen := func(insecure bool) bool {
		cfg := config{Ledger: ledger, PostgresURL: testenv.PostgresURL(t), Name: "notifications",
			NATS: consumer.NATSOptions{URL: l.NATSURL}, LedgerdAddr: lis.Addr().String(), APIKey: key, LedgerdInsecure: insecure}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) // stops: "ledgerd" answers nothing
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, "Bearer "+key)
	}
	if keySeen(false) {
		t.Fatalf("the auditor key reached a plaintext listener at -ledgerd %s without -ledgerd-insecure", lis.Addr())
	}
	if !keySeen(true) {
		t.Fatal("with -ledgerd-insecure the service sent the listener no key: the test proves nothing")
	}
}
