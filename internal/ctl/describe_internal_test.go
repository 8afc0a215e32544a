package ctl

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestDescribeUnavailable: gRPC's Unavailable for a ledgerd it could not
// reach asks whether it runs; ledgerd's own Unavailable (a drain, another
// node writing the ledger) gives ledgerd's reason first, not that guess.
func TestDescribeUnavailable(t *testing.T) {
	c := &client{globals: globals{addr: "127.0.0.1:7070", keyFile: "var/admin.key"}}
	for _, tc := range []struct {
		err           error
		want, wantNot string
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7070: connect: connection refused"`),
			"is it running?", ""},
		{status.Error(codes.Unavailable, "this ledgerd is draining: send commands to another node"),
			"ledgerd at 127.0.0.1:7070: Unavailable: this ledgerd is draining", "is it running?"},
		{status.Error(codes.Unauthenticated, "unknown or revoked api key lk_x"), "LEDGER_DATA_DIR", ""},
		{errors.New("plain"), "plain", ""},
	} {
		got := c.describe(tc.err)
		if !strings.Contains(got, tc.want) || (tc.wantNot != "" && strings.Contains(got, tc.wantNot)) {
			t.Errorf("describe(%v) = %q, want it to hold %q and not %q", tc.err, got, tc.want, tc.wantNot)
		}
	}
}
