package ctl

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestDescribeUnavailable: gRPC's Unavailable for a ledgerd it could not
// reach asks whether it runs; a server's own Unavailable (ledgerd
// draining, another node writing the ledger) gives its reason, not that
// guess.
func TestDescribeUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "this ledgerd takes no writes for the ledger: it is draining")
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close() // nothing listens there now

	for _, tc := range []struct {
		addr          string
		want, wantNot string
	}{
		{deadAddr, "is it running?", ""},
		{lis.Addr().String(), ": Unavailable: this ledgerd takes no writes for the ledger: it is draining", "is it running?"},
	} {
		conn, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c := &client{globals: globals{addr: tc.addr}, conn: conn}
		err = conn.Invoke(context.Background(), "/ledger.v1.CommandService/CreateTransfers", &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: %v, want Unavailable", tc.addr, err)
		}
		got := c.describe(err)
		if !strings.Contains(got, tc.want) || (tc.wantNot != "" && strings.Contains(got, tc.wantNot)) {
			t.Errorf("describe(%v) = %q, want it to hold %q and not %q", err, got, tc.want, tc.wantNot)
		}
		_ = conn.Close()
	}
	c := &client{globals: globals{keyFile: "var/admin.key"}}
	if got := c.describe(status.Error(codes.Unauthenticated, "unknown or revoked api key lk_x")); !strings.Contains(got, "LEDGER_DATA_DIR") {
		t.Errorf("Unauthenticated: %q, want the hint to name LEDGER_DATA_DIR", got)
	}
	if got := c.describe(errors.New("plain")); got != "plain" {
		t.Errorf("a plain error: %q", got)
	}
}
