package daemon_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestRESTClientCannotDemoteTheGatewayConnections: the REST gateway
// forwards Authorization and every Grpc-Metadata-* header as gRPC metadata,
// so a REST call with a valid key in Authorization and another
// authorization in Grpc-Metadata-Authorization passes the gateway's check
// (one Authorization header) and reaches the gRPC server with two
// authorization values: TapHandle refuses it (Unauthenticated, "more than
// one authorization header"). Such a refusal demoted the connection it came
// on, the gateway's own loopback connection, which every REST client
// shares: the oldest without a key, the first a newcomer without a key
// replaced at the cap, cutting every REST call in flight on it. A
// connection is now demoted only for the key it authenticated with.
func TestRESTClientCannotDemoteTheGatewayConnections(t *testing.T) {
	t.Parallel()
	const connsMax = 16
	h := startWith(t, func(m *daemon.Main) { m.Config.ConnsMax = connsMax })
	get := func(extra bool) int {
		req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/v1/ledgers/x/projections", nil)
		testenv.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.key)
		if extra {
			req.Header.Set("Grpc-Metadata-Authorization", "Bearer "+h.key)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	keyed := func() map[string]bool {
		out := map[string]bool{}
		for remote, key := range daemon.GRPCConns(h.m) {
			if key != "" {
				out[remote] = true
			}
		}
		return out
	}
	// Every connection of the gateway's pool carries a call (the harness's
	// own gRPC client has made none).
	for range 16 {
		get(false)
	}
	gateway := keyed()
	if len(gateway) == 0 {
		t.Fatal("no gRPC connection authenticated after REST calls")
	}
	for range 16 {
		if code := get(true); code != http.StatusUnauthorized {
			t.Logf("a REST call with Grpc-Metadata-Authorization: status %d", code)
		}
	}
	if now := keyed(); len(now) != len(gateway) {
		t.Errorf("a REST client's calls demoted the gateway's gRPC connections: %d authenticated before, %d after",
			len(gateway), len(now))
	}

	// The consequence: newcomers without a key replace them at the cap.
	for range connsMax {
		c, err := net.Dial("tcp", h.m.GRPCAddr())
		testenv.NoError(t, err)
		defer c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	held := daemon.GRPCConns(h.m)
	for remote := range gateway {
		if _, ok := held[remote]; !ok {
			t.Errorf("the gateway's connection from %s was replaced by a connection without a key", remote)
		}
	}
}
