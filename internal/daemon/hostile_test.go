package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// countingConn counts the bytes a client writes to its socket.
type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// unreadMax is how much of a refused request may reach the server's socket:
// HTTP/2 windows (64 KiB a stream at first) and socket buffers, with a wide
// margin. The requests below are 48 MiB.
const unreadMax = 8 << 20

// TestUnauthenticatedRequestIsNotRead: a large request without a valid key
// (none, an unknown one) or with a key lacking the method's role is refused
// from its headers: the server does not take its body, so the client
// cannot even write it. A keyed call of a small method with a message over
// RecvMaxSmall is refused with ResourceExhausted.
func TestUnauthenticatedRequestIsNotRead(t *testing.T) {
	t.Parallel()
	h := start(t)
	reader, _ := h.as(t, h.key).newKey(t, nil, "reader")
	unknown := newKey(t)
	big := &ledgerv1.CreateTransfersRequest{Ledger: "x", Transfers: []*ledgerv1.Transfer{{Id: "t", Reference: strings.Repeat("a", 48<<20)}}}
	for _, tc := range []struct {
		name, key string
		code      codes.Code
	}{
		{"no key", "", codes.Unauthenticated},
		{"unknown key", unknown, codes.Unauthenticated},
		{"reader key", reader, codes.PermissionDenied},
	} {
		var written atomic.Int64
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64 << 20)),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				return countingConn{Conn: c, written: &written}, err
			})}
		if tc.key != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(apikeys.Bearer(tc.key)))
		}
		conn, err := grpc.NewClient(h.m.GRPCAddr(), opts...)
		testenv.NoError(t, err)
		_, err = ledgerv1.NewCommandServiceClient(conn).CreateTransfers(ctx(t), big)
		conn.Close()
		wantCode(t, tc.name, err, tc.code)
		if n := written.Load(); n > unreadMax {
			t.Errorf("%s: the client wrote %d bytes of a refused 48 MiB request, want at most %d", tc.name, n, unreadMax)
		}
	}
	// REST calls refused from their key, before the gateway reads them.
	for _, key := range []string{"", unknown} {
		req, err := http.NewRequestWithContext(ctx(t), "POST", "http://"+h.m.HTTPAddr()+"/v1/ledgers/x/transfers",
			strings.NewReader(`{"transfers": []}`))
		testenv.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("REST with key %q: status %d, want 401", key, resp.StatusCode)
		}
	}
	// Counted, though no interceptor saw them: two gRPC and two REST calls
	// without a valid key.
	for _, want := range []string{`ledger_grpc_refused_before_read_total{code="Unauthenticated"} 4`,
		`ledger_grpc_refused_before_read_total{code="PermissionDenied"} 1`} {
		if m := metricsText(t, h); !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A small method takes at most RecvMaxSmall, keyed or not.
	_, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: strings.Repeat("l", grpcapi.RecvMaxSmall)},
		grpc.MaxCallSendMsgSize(64<<20))
	wantCode(t, "GetBalances of 4 MiB and more", err, codes.ResourceExhausted)
}

// TestRecvBudget: calls in flight hold RecvMaxLarge from before their
// message is read, within their key's share
// (RecvBytesPerKeyMax: 4 open ImportEvents streams) and within
// RecvBytesInFlightMax (16). A call beyond either waits, and goes on when
// one of them ends; a key over its share does not hold up another key.
func TestRecvBudget(t *testing.T) {
	t.Parallel()
	h := start(t)
	admin := h.as(t, h.key)
	const perKey = grpcapi.RecvBytesPerKeyMax / grpcapi.RecvMaxLarge
	const keys = grpcapi.RecvBytesInFlightMax / grpcapi.RecvBytesPerKeyMax
	// hold opens perKey batch streams as key; they hold until cancelled.
	hold := func(key string) []context.CancelFunc {
		c := h.as(t, key)
		cancels := make([]context.CancelFunc, perKey)
		for i := range cancels {
			sc, cancel := context.WithCancel(ctx(t))
			cancels[i] = cancel
			t.Cleanup(cancel)
			_, err := c.audit.ImportEvents(sc)
			testenv.NoError(t, err)
		}
		return cancels
	}
	probe := func(c *caller, timeout time.Duration) error {
		pc, cancel := context.WithTimeout(ctx(t), timeout)
		defer cancel()
		_, err := c.query.GetProjectionStatus(pc, &ledgerv1.GetProjectionStatusRequest{})
		return err
	}
	held := func(c *caller, what string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() error {
			if err := probe(c, 300*time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
				return fmt.Errorf("%s: %v, want the call held (DeadlineExceeded)", what, err)
			}
			return nil
		})
	}
	first, _ := admin.newKey(t, nil, "admin")
	hold(first)
	held(h.as(t, first), "a call of a key holding its share")
	testenv.NoError(t, probe(admin, 20*time.Second))
	var cancels []context.CancelFunc
	for range keys - 1 {
		key, _ := admin.newKey(t, nil, "admin")
		cancels = append(cancels, hold(key)...)
	}
	held(admin, "a call with the whole budget held")
	cancels[0]()
	testenv.NoError(t, probe(admin, 20*time.Second))
}

// gatedConn is a client's socket that stops writing once it has written
// gateAt bytes, until open is closed: a request caught in the middle of its
// message.
type gatedConn struct {
	net.Conn
	written *atomic.Int64
	gateAt  int64
	open    chan struct{}
}

func (c gatedConn) Write(p []byte) (int, error) {
	if c.written.Load() >= c.gateAt {
		<-c.open
	}
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// metricValue is the value of the metric line named name, -1 when absent.
func metricValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, h), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			testenv.NoError(t, err)
			return f
		}
	}
	return -1
}

// TestRecvBudgetCountsWhatMayBeRead: a keyed call of a small method
// (RecvMaxSmall) with a 10 MiB message holds RecvMaxLarge of the budget
// while its message is read, since grpc-go reads any message up to the
// server's one receive bound before anything can refuse it; it is then
// refused with ResourceExhausted, the server having read its 10 MiB, and the
// budget is whole again.
func TestRecvBudgetCountsWhatMayBeRead(t *testing.T) {
	t.Parallel()
	h := start(t)
	const size = 10 << 20
	var written atomic.Int64
	open := make(chan struct{})
	var once sync.Once
	opening := func() { once.Do(func() { close(open) }) }
	defer opening()
	conn, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(apikeys.Bearer(h.key)), grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return gatedConn{Conn: c, written: &written, gateAt: 2 << 20, open: open}, err
		}))
	testenv.NoError(t, err)
	defer conn.Close()
	received := metricValue(t, h, "ledger_grpc_recv_bytes_total")
	done := make(chan error, 1)
	go func() {
		_, err := ledgerv1.NewQueryServiceClient(conn).GetBalances(ctx(t),
			&ledgerv1.GetBalancesRequest{Ledger: strings.Repeat("l", size)})
		done <- err
	}()
	testenv.Eventually(t, 20*time.Second, func() error {
		if got := metricValue(t, h, "ledger_grpc_recv_reserved_bytes"); got != grpcapi.RecvMaxLarge {
			return fmt.Errorf("a 10 MiB message of a small method being read holds %v bytes (%d written), want %d",
				got, written.Load(), grpcapi.RecvMaxLarge)
		}
		return nil
	})
	opening()
	wantCode(t, "GetBalances of 10 MiB", <-done, codes.ResourceExhausted)
	testenv.Eventually(t, 20*time.Second, func() error {
		if got := metricValue(t, h, "ledger_grpc_recv_reserved_bytes"); got != 0 {
			return fmt.Errorf("%v bytes held after the call ended, want 0", got)
		}
		return nil
	})
	if got := metricValue(t, h, "ledger_grpc_recv_bytes_total") - received; got < size {
		t.Errorf("the server read %v bytes of the refused call, want its %d: what the budget must cover", got, size)
	}
}

// TestRESTKeyAndRoleCheckedBeforeBody: a REST request without a valid key
// is answered 401 from its headers, one whose key lacks its method's role
// 403 (a reader's CreateTransfers, a reader's import, whose read deadline
// is not lifted), their 60 MiB bodies never sent; a keyed one over its
// route's bound 413, from its Content-Length.
func TestRESTKeyAndRoleCheckedBeforeBody(t *testing.T) {
	t.Parallel()
	h := start(t)
	reader, _ := h.as(t, h.key).newKey(t, nil, "reader")
	for _, tc := range []struct {
		name, path, auth string
		length           int
		want             string
	}{
		{"no key", "/v1/ledgers/x/transfers", "", 60 << 20, "401"},
		{"unknown key", "/v1/ledgers/x/transfers", "Bearer " + newKey(t), 60 << 20, "401"},
		{"reader key, CreateTransfers", "/v1/ledgers/x/transfers", "Bearer " + reader, 60 << 20, "403"},
		{"reader key, ImportEvents", "/v1/events:import", "Bearer " + reader, 60 << 20, "403"},
		{"small route over 4 MiB", "/v1/ledgers/x/balances:batchGet", "Bearer " + h.key, 4<<20 + 1, "413"},
	} {
		c, err := net.Dial("tcp", h.m.HTTPAddr())
		testenv.NoError(t, err)
		req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", tc.path, tc.length)
		if tc.auth != "" {
			req += "Authorization: " + tc.auth + "\r\n"
		}
		_, err = io.WriteString(c, req+"\r\n")
		testenv.NoError(t, err)
		testenv.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 "+tc.want) {
			t.Errorf("%s: %q (%v) before the body was sent, want HTTP/1.1 %s", tc.name, line, err, tc.want)
		}
	}
}

// TestIdleConnectionsDoNotStopAKeyedClient: 1,000 connections that send
// nothing, to each port, do not keep a keyed client out; beyond ConnsMax
// the server closes them.
func TestIdleConnectionsDoNotStopAKeyedClient(t *testing.T) {
	t.Parallel()
	const connsMax, idle = 200, 1000
	// Both ends of 2 × 1,000 connections are in this process.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 4*idle+1024 {
		t.Skipf("needs %d file descriptors (ulimit -n), has %d", 4*idle+1024, lim.Cur)
	}
	h := startWith(t, func(m *daemon.Main) { m.Config.ConnsMax = connsMax })
	var closed [2]atomic.Int64
	var wg sync.WaitGroup
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for port, addr := range []string{h.m.GRPCAddr(), h.m.HTTPAddr()} {
		for range idle {
			c, err := net.Dial("tcp", addr)
			testenv.NoError(t, err)
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Until the server closes it (gRPC sends its settings first).
				_, _ = io.Copy(io.Discard, c)
				closed[port].Add(1)
			}()
		}
	}
	// A new keyed client, over gRPC and over REST.
	keyed := h.as(t, h.key)
	_, err := keyed.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)
	h.rest(t, "GET", "/v1/projections", "", http.StatusOK, nil)
	for port, name := range []string{"gRPC", "HTTP"} {
		testenv.Eventually(t, 20*time.Second, func() error {
			if n := closed[port].Load(); n < idle-connsMax {
				return fmt.Errorf("%s: the server closed %d of %d idle connections, want at least %d", name, n, idle, idle-connsMax)
			}
			return nil
		})
	}
}

// TestFailedAuthenticationsRateLimited: a source sending unknown keys is
// soon refused with ResourceExhausted (no more look-ups), while a key
// already verified still works from it.
func TestFailedAuthenticationsRateLimited(t *testing.T) {
	t.Parallel()
	h := start(t)
	admin := h.as(t, h.key)
	_, err := admin.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)
	// Unknown keys, all at once over one connection: the bucket earns one
	// failure back every FailedAuthEvery, so failures sent one after another
	// on a loaded machine (a connection each) could arrive slower than that
	// and never run it dry.
	anon := h.as(t, "")
	const tries = 10 * grpcapi.FailedAuthBurst
	var refused, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			c := metadata.AppendToOutgoingContext(ctx(t), "authorization", "Bearer "+newKey(t))
			_, err := anon.query.GetProjectionStatus(c, &ledgerv1.GetProjectionStatusRequest{})
			switch status.Code(err) {
			case codes.Unauthenticated:
				refused.Add(1)
			case codes.ResourceExhausted:
				limited.Add(1)
			default:
				t.Errorf("unknown key %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if limited.Load() == 0 {
		t.Fatalf("%d unknown keys from one source at once, never ResourceExhausted", tries)
	}
	if refused.Load() < grpcapi.FailedAuthBurst {
		t.Errorf("%d refused as unknown before the limit, want at least the burst of %d", refused.Load(), grpcapi.FailedAuthBurst)
	}
	// A known key from the same source still works: it costs no look-up.
	_, err = admin.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{})
	testenv.NoError(t, err)
}

// TestReadEventsStreamsBounded: ReadEvents streams are bounded per key
// (ReadEventsStreamsPerKeyMax) and in all (ReadEventsStreamsMax); a slot
// comes back when its stream ends.
func TestReadEventsStreamsBounded(t *testing.T) {
	t.Parallel()
	checkStreamsBounded(t, grpcapi.ReadEventsStreamsMax, grpcapi.ReadEventsStreamsPerKeyMax,
		func(c context.Context, audit ledgerv1.AuditServiceClient, ledger string) error {
			stream, err := audit.ReadEvents(c, &ledgerv1.ReadEventsRequest{Ledger: ledger})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		})
}

// TestStatementLinesStreamsBounded: ReadStatementLines streams, each
// holding a PostgreSQL connection while it reads, are bounded per key
// (StatementLinesStreamsPerKeyMax) and in all (StatementLinesStreamsMax).
func TestStatementLinesStreamsBounded(t *testing.T) {
	t.Parallel()
	checkStreamsBounded(t, grpcapi.StatementLinesStreamsMax, grpcapi.StatementLinesStreamsPerKeyMax,
		func(c context.Context, audit ledgerv1.AuditServiceClient, ledger string) error {
			stream, err := audit.ReadStatementLines(c, &ledgerv1.ReadStatementLinesRequest{Ledger: ledger, ToPosition: 2500})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		})
}

// checkStreamsBounded opens streams with open, which reads one message of
// a stream of several, until the bounds per key (perKey) and in all
// (inAll) refuse one; a slot comes back when its stream ends.
func checkStreamsBounded(t *testing.T, inAll, perKey int,
	open func(c context.Context, audit ledgerv1.AuditServiceClient, ledger string) error) {
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	// Several messages of events and of lines: a stream whose client reads
	// one and stops stays open, its server blocked on the next.
	ts := make([]*ledgerv1.Transfer, 2500)
	for i := range ts {
		ts[i] = transfer(fmt.Sprintf("t%d", i), "alice", "bob", "1.00", "USD")
	}
	mustCreated(t, h.transfers(t, ledger, ts...)...)
	admin := h.as(t, h.key)
	// openAs starts a stream as key and reads its first message.
	openAs := func(key string) (context.CancelFunc, error) {
		conn, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(apikeys.Bearer(key)), grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
		testenv.NoError(t, err)
		// Not ctx(t): a stream whose deadline passed while the others open
		// would give its slot back and let one over the bound in. Bounded
		// still, well past the whole test's length under -race.
		c, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		stop := func() { cancel(); conn.Close() }
		if err := open(c, ledgerv1.NewAuditServiceClient(conn), ledger); err != nil {
			stop()
			return nil, err
		}
		t.Cleanup(stop)
		return stop, nil
	}
	keys := make([]string, inAll/perKey+1)
	for i := range keys {
		keys[i], _ = admin.newKey(t, nil, "auditor")
	}
	var first context.CancelFunc
	for _, key := range keys[:len(keys)-1] {
		for range perKey {
			stop, err := openAs(key)
			testenv.NoError(t, err)
			if first == nil {
				first = stop
			}
		}
		_, err := openAs(key)
		wantCode(t, "a stream over the bound per key", err, codes.ResourceExhausted)
	}
	last := keys[len(keys)-1]
	_, err := openAs(last)
	wantCode(t, "a stream over the bound in all", err, codes.ResourceExhausted)
	first()
	testenv.Eventually(t, 20*time.Second, func() error {
		_, err := openAs(last)
		return err
	})
}

// TestReadyzWithoutKeyHidesConnectionDetails: with PostgreSQL refusing
// ledgerd, /readyz tells a caller without an admin key only that it is
// unreachable, not the driver's error (user, database, socket).
func TestReadyzWithoutKeyHidesConnectionDetails(t *testing.T) {
	t.Parallel()
	h := start(t)
	cfg, err := pgx.ParseConfig(h.pgURL)
	testenv.NoError(t, err)
	db := cfg.Database
	other := cfg.Copy()
	other.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx(t), other)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx(t), fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS false`, db))
	testenv.NoError(t, err)
	t.Cleanup(func() { // before ledgerd closes (cleanups run last first)
		c, err := pgx.ConnectConfig(context.Background(), other)
		if err == nil {
			_, _ = c.Exec(context.Background(), fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS true`, db))
			c.Close(context.Background())
		}
	})
	_, err = conn.Exec(ctx(t), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, db)
	testenv.NoError(t, err)
	get := func(key string) (int, string) {
		req, err := http.NewRequestWithContext(ctx(t), "GET", "http://"+h.m.HTTPAddr()+"/readyz", nil)
		testenv.NoError(t, err)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Once a new connection is tried (the pool's old ones were ended), the
	// driver's error names the user and the database: told to nobody
	// without a key.
	for _, key := range []string{"", newKey(t)} {
		testenv.Eventually(t, 20*time.Second, func() error {
			if code, body := get(key); code != http.StatusServiceUnavailable || body != "postgres: unreachable\n" {
				return fmt.Errorf("/readyz with key %q: %d %q, want 503 \"postgres: unreachable\"", key, code, body)
			}
			return nil
		})
	}
	// The pool's ended connections answer first with an error naming
	// nothing: watch a while that a new connection's never shows.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if _, body := get(""); strings.Contains(body, db) || strings.Contains(body, "user=") {
			t.Fatalf("/readyz without a key: %q", body)
		}
	}
}

// TestNATSPasswordNotShown: a NATS URL's password is in no error and no log
// line of a ledgerd that cannot connect.
func TestNATSPasswordNotShown(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	addr := lis.Addr().String()
	lis.Close() // a port nothing listens on
	const secret = "s3cr3t-pa55"
	var logs bytes.Buffer
	var mu sync.Mutex
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: "nats://ledger:" + secret + "@" + addr,
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: newKey(t)},
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	err = m.Run(ctx(t))
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	if err != nil && (strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "nats://***@"+addr)) {
		t.Errorf("start error %q: want the URL as nats://***@%s", err, addr)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the NATS password is logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestStreamingCallsInMetrics: a ReadEvents stream is counted in the
// request metrics like a unary call.
func TestStreamingCallsInMetrics(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	testenv.NoError(t, h.as(t, h.key).readEvents(ledger))
	want := `ledger_grpc_request_duration_seconds_count{code="OK",method="/ledger.v1.AuditService/ReadEvents"} 1`
	if !strings.Contains(metricsText(t, h), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// metricsText is what /metrics answers.
func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
	testenv.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	testenv.NoError(t, err)
	return string(body)
}

// TestExportFileIsPrivate: log export --out writes a file its owner alone
// may read, a new one or one that was readable by others.
func TestExportFileIsPrivate(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	dir := t.TempDir()
	fresh, existing := filepath.Join(dir, "fresh.jsonl"), filepath.Join(dir, "existing.jsonl")
	testenv.NoError(t, os.WriteFile(existing, nil, 0o644))
	testenv.NoError(t, os.Chmod(existing, 0o644)) // whatever the umask
	for _, path := range []string{fresh, existing} {
		h.runCtlOK(t, ledger, "log", "export", "--out", path)
		st, err := os.Stat(path)
		testenv.NoError(t, err)
		if mode := st.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", filepath.Base(path), mode)
		}
	}
}

// TestSilentConnectionClosed: a gRPC connection that never sends the
// HTTP/2 preface is closed after the handshake timeout (10 s; gRPC's own
// default was 120 s), below the connection cap too.
func TestSilentConnectionClosed(t *testing.T) {
	t.Parallel()
	h := start(t)
	c, err := net.Dial("tcp", h.m.GRPCAddr())
	testenv.NoError(t, err)
	defer c.Close()
	testenv.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	// The server's settings come first; then the end of the connection.
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("a silent connection: %v, want it closed by the server within 30 s", err)
	}
}
