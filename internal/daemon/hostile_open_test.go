package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestUnauthenticatedHeaderBlockBounded: a client without any key opens a
// gRPC connection and sends one header block that never ends (HEADERS
// without END_HEADERS, then CONTINUATION frames) whose one literal header
// value is 15 MiB. No call exists yet, so neither the key check nor any
// interceptor has run: the server must refuse the header list from the
// value's length prefix (grpcHeaderListMax) and close the connection, not
// buffer it (grpc-go's default bound is 16 MiB a connection). The signal is
// the server's own: it closes the connection before the block is sent.
func TestUnauthenticatedHeaderBlockBounded(t *testing.T) {
	t.Parallel()
	h := start(t)
	const valueLen = 15 << 20
	c, err := net.Dial("tcp", h.m.GRPCAddr())
	testenv.NoError(t, err)
	defer c.Close()
	closed := make(chan error, 1)
	go func() {
		// The server's frames, until it closes the connection.
		fr := http2.NewFramer(io.Discard, c)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				closed <- err
				return
			}
		}
	}()
	_, err = io.WriteString(c, http2.ClientPreface)
	testenv.NoError(t, err)
	fr := http2.NewFramer(c, nil)
	testenv.NoError(t, fr.WriteSettings())
	// A literal header field without indexing, with a new name, and a value
	// of valueLen (a 7-bit prefix integer, no Huffman coding).
	var blk bytes.Buffer
	blk.WriteByte(0x00)
	blk.WriteByte(5)
	blk.WriteString("x-pad")
	n := uint64(valueLen) - 127
	blk.WriteByte(127)
	for n >= 128 {
		blk.WriteByte(byte(n%128) | 0x80)
		n /= 128
	}
	blk.WriteByte(byte(n))
	testenv.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes()}))
	chunk := bytes.Repeat([]byte("a"), 16384)
	sent := 0
	// Writes fail once the server has closed the connection (after the
	// socket buffers fill, or on its reset).
	for ; sent < valueLen-1; sent += len(chunk) {
		if err := fr.WriteContinuation(1, false, chunk); err != nil {
			break
		}
	}
	select {
	case err := <-closed:
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.Logf("connection ended: %v", err)
		}
		t.Logf("the server closed the connection; the client had written %d KiB of the header value", sent>>10)
	case <-time.After(10 * time.Second):
		t.Errorf("the server still reads a header block of %d MiB (written: %d MiB) from a connection without a key: "+
			"it buffers header lists beyond grpcHeaderListMax", valueLen>>20, sent>>20)
	}
}

// TestHeaderBoundsLeaveRoomForMetadata: what a legitimate call carries
// besides its key (W3C baggage has 8 KiB at most: 16 KiB here) fits in
// the gRPC header bound; a REST request's headers over theirs (32 KiB)
// are refused with 431 before anything else, not forwarded to fail.
func TestHeaderBoundsLeaveRoomForMetadata(t *testing.T) {
	t.Parallel()
	h := start(t)
	mctx := metadata.AppendToOutgoingContext(ctx(t), "baggage", strings.Repeat("b", 16<<10))
	_, err := h.query.GetProjectionStatus(mctx, &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)

	req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/v1/ledgers", nil)
	testenv.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Grpc-Metadata-Pad", strings.Repeat("p", 40<<10))
	resp, err := http.DefaultClient.Do(req)
	testenv.NoError(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("REST request with 40 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

// TestUnauthenticatedHealthCheckNotRead: health checks need no key, so
// there is no key to charge a message read to: a Health/Check of 48 MiB
// (grpc-go's one receive bound is RecvMaxLarge) must be refused from its
// length prefix (grpcapi.OpenRecvMax), unread, and one at the bound served.
func TestUnauthenticatedHealthCheckNotRead(t *testing.T) {
	t.Parallel()
	h := start(t)
	conn, written := keylessCountingClient(t, h)
	hc := healthpb.NewHealthClient(conn)
	_, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 48<<20)})
	wantCode(t, "Health/Check of 48 MiB", err, codes.ResourceExhausted)
	if n := written.Load(); n > unreadMax {
		t.Errorf("without a key, the server read %d MiB of a 48 MiB Health/Check request (want at most %d MiB)",
			n>>20, unreadMax>>20)
	}
	// At the bound (a tag and a 2-byte length, then the name): answered.
	_, err = hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", grpcapi.OpenRecvMax-3)})
	wantCode(t, "Health/Check at the bound", err, codes.NotFound) // no such service
	_, err = hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", grpcapi.OpenRecvMax-2)})
	wantCode(t, "Health/Check a byte over the bound", err, codes.ResourceExhausted)
	resp, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{}, grpc.UseCompressor(gzip.Name))
	testenv.NoError(t, err)
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Health/Check, compressed: %v, want SERVING", resp.GetStatus())
	}
}

// TestUnauthenticatedHealthWatchBounded: a Health/Watch (no key needed)
// lasts as long as its client keeps it, holding its request: its service
// name is bounded (a Watch of 4 MiB is refused, unread), and so is the
// number of open methods' streams (grpcapi.OpenStreamsMax, all clients
// together): one more is refused, and one ending makes room.
func TestUnauthenticatedHealthWatchBounded(t *testing.T) {
	t.Parallel()
	h := start(t)
	conn, written := keylessCountingClient(t, h)
	w, err := healthpb.NewHealthClient(conn).Watch(ctx(t),
		&healthpb.HealthCheckRequest{Service: strings.Repeat("s", grpcapi.RecvMaxSmall-64)})
	testenv.NoError(t, err)
	_, err = w.Recv()
	wantCode(t, "Health/Watch of 4 MiB", err, codes.ResourceExhausted)
	if n := written.Load(); n > unreadMax {
		t.Errorf("without a key, the server read %d MiB of a 4 MiB Health/Watch request", n>>20)
	}

	// Each connection carries 256 calls at most (grpcStreamsPerConnMax).
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	watch := func(i int) (healthpb.Health_WatchClient, context.CancelFunc, error) {
		if i/200 >= len(conns) {
			c, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			testenv.NoError(t, err)
			conns = append(conns, c)
		}
		wctx, cancel := context.WithCancel(ctx(t))
		w, err := healthpb.NewHealthClient(conns[i/200]).Watch(wctx, &healthpb.HealthCheckRequest{Service: fmt.Sprint(i)})
		if err == nil {
			_, err = w.Recv() // SERVICE_UNKNOWN: the server holds the watch
		}
		return w, cancel, err
	}
	cancels := make([]context.CancelFunc, grpcapi.OpenStreamsMax)
	for i := range grpcapi.OpenStreamsMax {
		_, cancel, err := watch(i)
		testenv.NoError(t, err)
		cancels[i] = cancel
	}
	_, cancel, err := watch(grpcapi.OpenStreamsMax)
	defer cancel()
	wantCode(t, "one Health/Watch more than OpenStreamsMax", err, codes.ResourceExhausted)
	stream, err := reflectionpb.NewServerReflectionClient(conns[0]).ServerReflectionInfo(ctx(t))
	if err == nil {
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	wantCode(t, "a reflection stream beyond OpenStreamsMax", err, codes.ResourceExhausted)
	cancels[0]()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, cancel, err := watch(grpcapi.OpenStreamsMax)
		cancel()
		return err
	})
	for _, cancel := range cancels {
		cancel()
	}
}

// TestReadyzWithoutKeyCostsNoQueries: /readyz needs no key, and each
// request pinged PostgreSQL and ran the read side's faults query, on the
// pools commands and queries use: unauthenticated clients could turn their
// request rate into queries. A reading serves every request for a second
// (readyFreshFor), so a burst of them costs a few readings, not one each;
// the pools' loans in an idle interval as long are the baseline.
func TestReadyzWithoutKeyCostsNoQueries(t *testing.T) {
	t.Parallel()
	h := start(t)
	const requests = 2000
	var wg sync.WaitGroup
	var next atomic.Int64
	before, began := h.m.PoolAcquires(), time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= requests {
				resp, err := http.Get("http://" + h.m.HTTPAddr() + "/readyz")
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("/readyz: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	busy := h.m.PoolAcquires() - before
	before = h.m.PoolAcquires()
	time.Sleep(took) // an idle interval as long: heartbeats, relays, projections
	idle := h.m.PoolAcquires() - before
	t.Logf("connections lent: %d in %v with %d /readyz without a key, %d in as long idle", busy, took, requests, idle)
	if busy-idle > requests/10 {
		t.Errorf("%d unauthenticated /readyz requests cost PostgreSQL about %d connections' loans (%.1f each)",
			requests, busy-idle, float64(busy-idle)/requests)
	}
}

// keylessCountingClient is a connection to h's gRPC server without a key,
// sending messages up to 64 MiB, and the bytes it has written.
func keylessCountingClient(t *testing.T, h *harness) (*grpc.ClientConn, *atomic.Int64) {
	t.Helper()
	written := new(atomic.Int64)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return countingConn{Conn: c, written: written}, err
		}))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn, written
}
