package grpcapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestLargeRecvMethodsExist: every method given RecvMaxLarge is a method
// of the API (a misspelt one would silently take RecvMaxSmall).
func TestLargeRecvMethodsExist(t *testing.T) {
	for m := range largeRecvMethods {
		if _, ok := methodRoles[m]; !ok {
			t.Errorf("largeRecvMethods names %s, which is not in methodRoles", m)
		}
	}
}

// TestRecvSizeAtTheBound: a small method's message of RecvMaxSmall bytes
// passes, one byte more is ResourceExhausted; a batch method's is not
// checked here (gRPC's own bound is RecvMaxLarge).
func TestRecvSizeAtTheBound(t *testing.T) {
	const method = "/ledger.v1.QueryService/GetBalances"
	// A string field: tag, 4-byte length, bytes.
	at := &ledgerv1.GetBalancesRequest{Ledger: strings.Repeat("l", RecvMaxSmall-5)}
	if err := checkRecvSize(method, at); err != nil {
		t.Errorf("a message of RecvMaxSmall bytes: %v", err)
	}
	over := &ledgerv1.GetBalancesRequest{Ledger: strings.Repeat("l", RecvMaxSmall-4)}
	if err := checkRecvSize(method, over); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a message of RecvMaxSmall+1 bytes: %v, want ResourceExhausted", err)
	}
	batch := &ledgerv1.CreateTransfersRequest{Ledger: strings.Repeat("l", RecvMaxSmall)}
	if err := checkRecvSize("/ledger.v1.CommandService/CreateTransfers", batch); err != nil {
		t.Errorf("a batch over RecvMaxSmall: %v", err)
	}
}

// TestFailureLimiter: a source is blocked after FailedAuthBurst failures,
// earns one back every FailedAuthEvery; at most FailedAuthSourcesMax
// sources are remembered, sources back to a full burst making room.
func TestFailureLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newFailureLimiter(func() time.Time { return now })
	for i := range FailedAuthBurst {
		if l.blocked("a") {
			t.Fatalf("blocked after %d failures, want %d allowed", i, FailedAuthBurst)
		}
		l.fail("a")
	}
	if !l.blocked("a") {
		t.Fatalf("not blocked after %d failures", FailedAuthBurst)
	}
	now = now.Add(FailedAuthEvery)
	if l.blocked("a") {
		t.Fatalf("still blocked after %s", FailedAuthEvery)
	}
	for i := range FailedAuthSourcesMax - 1 {
		l.fail(fmt.Sprintf("s%d", i))
	}
	if len(l.sources) != FailedAuthSourcesMax || !l.blocked("new") {
		t.Fatalf("%d sources, new one blocked %v; want %d, blocked", len(l.sources), l.blocked("new"), FailedAuthSourcesMax)
	}
	now = now.Add(FailedAuthBurst * FailedAuthEvery) // every bucket full again
	if l.blocked("new") {
		t.Fatal("a new source blocked once the others refilled")
	}
	l.fail("new")
	if len(l.sources) > FailedAuthSourcesMax {
		t.Errorf("%d sources remembered, at most %d", len(l.sources), FailedAuthSourcesMax)
	}
}

// TestSourceOf: IPv4 by address, IPv6 by /64 (a link-local address's
// zone dropped), an IPv4-mapped IPv6 address as IPv4; a host that is no
// address (a Unix socket's) as it is.
func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"10.1.2.3:4567":                         "10.1.2.3",
		"10.1.2.4:4567":                         "10.1.2.4",
		"10.1.2.3":                              "10.1.2.3",
		"[2001:db8:1:2:3:4:5:6]:80":             "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:81":               "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:ffff]:81": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:80":                  "2001:db8:1:3::/64",
		"2001:db8:1:2::9":                       "2001:db8:1:2::/64",
		"[::ffff:10.1.2.3]:80":                  "10.1.2.3",
		"[fe80::1%eth0]:80":                     "fe80::/64",
		"[fe80::2:3%eth0]:80":                   "fe80::/64",
		"[::1]:80":                              "::/64",
		"@":                                     "@",
	} {
		if got := SourceOf(addr); got != want {
			t.Errorf("SourceOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

// TestRecvBudgetReturnedOnDecode: a unary call's reservation comes back
// when its handler starts, once: a budget of one batch message admits the
// next while the first is being served, and the first's end returns
// nothing more (a second release would panic).
func TestRecvBudgetReturnedOnDecode(t *testing.T) {
	b := NewRecvBudget(RecvMaxLarge)
	info := &stats.RPCTagInfo{FullMethodName: "/ledger.v1.CommandService/CreateTransfers"}
	reserved := func(ctx context.Context) bool { _, ok := ctx.Value(reservationKey{}).(*reservation); return ok }
	try := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)
		return b.TagRPC(ctx, info)
	}
	first := b.TagRPC(context.Background(), info)
	if !reserved(first) {
		t.Fatal("the first call got no reservation")
	}
	if reserved(try()) {
		t.Fatal("a second batch call reserved beyond the budget")
	}
	_, _ = b.UnaryInterceptor(first, nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		second := try()
		if !reserved(second) {
			t.Error("the budget was not returned when the first call's handler started")
		}
		b.HandleRPC(second, &stats.End{})
		return nil, nil
	})
	b.HandleRPC(first, &stats.End{})
	if !reserved(try()) {
		t.Error("the budget is not whole after both calls ended")
	}
}

// heldAudit is an AuditService whose streams wait in their handler until
// released, to look at the budget while they are open.
type heldAudit struct {
	ledgerv1.UnimplementedAuditServiceServer
	in      chan string
	release chan struct{}
}

func (a *heldAudit) ReadEvents(*ledgerv1.ReadEventsRequest, grpc.ServerStreamingServer[ledgerv1.ReadEventsResponse]) error {
	a.in <- "ReadEvents"
	<-a.release
	return nil
}

func (a *heldAudit) ImportEvents(s grpc.ClientStreamingServer[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse]) error {
	a.in <- "ImportEvents"
	<-a.release
	return s.SendAndClose(&ledgerv1.ImportEventsResponse{})
}

// TestRecvBudgetOfStreams: every call reserves RecvMaxLarge before its
// message is read (grpc-go may read that much for any method); a call that
// sends one message and receives a stream (ReadEvents, a small method)
// gives it back once its message is received, while its stream goes on; a
// client stream (ImportEvents) holds it until it ends.
func TestRecvBudgetOfStreams(t *testing.T) {
	b := NewRecvBudget(RecvBytesInFlightMax)
	srv := grpc.NewServer(grpc.StatsHandler(b), grpc.ChainStreamInterceptor(b.StreamInterceptor))
	audit := &heldAudit{in: make(chan string), release: make(chan struct{})}
	ledgerv1.RegisterAuditServiceServer(srv, audit)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := ledgerv1.NewAuditServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	read, err := client.ReadEvents(ctx, &ledgerv1.ReadEventsRequest{Ledger: "l"})
	if err != nil {
		t.Fatal(err)
	}
	<-audit.in
	if got := b.Reserved(); got != 0 {
		t.Errorf("a ReadEvents stream whose request was received holds %d bytes, want 0", got)
	}
	imp, err := client.ImportEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-audit.in
	if got := b.Reserved(); got != RecvMaxLarge {
		t.Errorf("an open ImportEvents stream holds %d bytes, want %d", got, RecvMaxLarge)
	}
	close(audit.release)
	if _, err := read.Recv(); err != io.EOF {
		t.Errorf("ReadEvents: %v, want its end", err)
	}
	if _, err := imp.CloseAndRecv(); err != nil {
		t.Errorf("ImportEvents: %v", err)
	}
	// stats.End may follow the client's answer.
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := b.Reserved(); got != 0 {
			return fmt.Errorf("%d bytes held after both streams ended, want 0", got)
		}
		return nil
	})
}

// TestDryRunCallsBounded: DryRunRule calls in progress are bounded per key
// (DryRunCallsPerKeyMax) and in all (DryRunCallsMax), refused beyond with
// ResourceExhausted; a place comes back when a call ends, and other methods
// are not counted.
func TestDryRunCallsBounded(t *testing.T) {
	t.Parallel()
	limit := NewDryRunLimit()
	dryRun := &grpc.UnaryServerInfo{FullMethod: ledgerv1.MonitoringService_DryRunRule_FullMethodName}
	as := func(id string) context.Context {
		return context.WithValue(context.Background(), keyContext{}, callKey{key: apikeys.Key{ID: id}})
	}
	release := make(chan struct{})
	started := make(chan struct{}, DryRunCallsMax)
	done := make(chan error, DryRunCallsMax)
	blocking := func(context.Context, any) (any, error) { started <- struct{}{}; <-release; return nil, nil }
	quick := func(context.Context, any) (any, error) { return nil, nil }
	for i := range DryRunCallsMax {
		go func() {
			_, err := limit.UnaryInterceptor(as(fmt.Sprintf("k%d", i)), nil, dryRun, blocking)
			done <- err
		}()
		<-started
		if i == 0 {
			_, err := limit.UnaryInterceptor(as("k0"), nil, dryRun, quick)
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "api key k0") {
				t.Errorf("a second dry run of key k0: %v, want ResourceExhausted per key", err)
			}
		}
	}
	_, err := limit.UnaryInterceptor(as("other"), nil, dryRun, quick)
	if status.Code(err) != codes.ResourceExhausted || strings.Contains(err.Error(), "api key") {
		t.Errorf("a dry run beyond %d in all: %v, want ResourceExhausted in all", DryRunCallsMax, err)
	}
	if _, err := limit.UnaryInterceptor(as("other"), nil, &grpc.UnaryServerInfo{FullMethod: "/ledger.v1.QueryService/GetBalances"},
		quick); err != nil {
		t.Errorf("another method while dry runs are at the bound: %v", err)
	}
	close(release)
	for range DryRunCallsMax {
		testenv.NoError(t, <-done)
	}
	if _, err := limit.UnaryInterceptor(as("other"), nil, dryRun, quick); err != nil {
		t.Errorf("a dry run once the others ended: %v", err)
	}
}
