package ledgerdtest_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// BenchmarkCreateTransferCall sends single-transfer CreateTransfers calls
// from 32 goroutines per core (64 on two) over 8 connections to a ledgerd
// in this process, and waits for every projection to apply the last: what
// a single-transfer request costs on the Go side, client included
// (docs/perf.md, "Session 21"). Beside the time it reports the
// allocations of the whole process (ledgerd's, its projections', the
// client's, and the test harness's NATS server when it runs in process)
// and its CPU per call, from getrusage; PostgreSQL's share is not in it
// (the cost model's runs measure that).
//
//	go test -run '^$' -bench CreateTransferCall -benchtime 20000x ./internal/ledgerdtest
func BenchmarkCreateTransferCall(b *testing.B) {
	const users = 1000
	l := ledgerdtest.Start(b)
	// Each run has a database of its own but shares the package's NATS:
	// a ledger of the same name would find the last run's stream.
	ledger := testenv.Name(b)
	queries := ledgerv1.NewQueryServiceClient(l.Conn)
	// The accounts' events are applied before the clock starts.
	waitProjections(b, queries, ledger, l.Setup(b, ledger, users))
	var last atomic.Uint64
	calls(b, l.Main.GRPCAddr(), l.Key, func(cc *grpc.ClientConn) func(uint64) error {
		client := ledgerv1.NewCommandServiceClient(cc)
		return func(n uint64) error {
			from, to := 1+int(n%users), 1+int((n*7+1)%users)
			resp, err := client.CreateTransfers(context.Background(), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
				Transfers: []*ledgerv1.Transfer{ledgerdtest.Transfer("t-"+strconv.FormatUint(n, 10),
					ledgerdtest.UserAccount(from), ledgerdtest.UserAccount(to), "1.00")}})
			if err != nil {
				return err
			}
			r := resp.GetResults()[0]
			if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
				return fmt.Errorf("transfer %d: %s %s", n, r.GetCode(), r.GetDetail())
			}
			for p := last.Load(); p < r.GetPosition() && !last.CompareAndSwap(p, r.GetPosition()); p = last.Load() {
			}
			return nil
		}
	}, func() { waitProjections(b, queries, ledger, last.Load()) })
}

// BenchmarkUnaryFloor is the cost of a gRPC call that does nothing (the
// health check) from 32 goroutines per core over 8 connections, client
// included, with the same key sent: on a bare grpc-go server (bare), and
// on ledgerd's (ledgerd), whose options run on every call, open ones
// included (the stats handler, metrics, the decode checks, the
// forwarder; the health check is open, so authentication and the byte
// budget pass it by). It is the floor under BenchmarkCreateTransferCall's
// go-µs/call that ledgerd's own work does not set (docs/perf.md,
// "Session 21").
//
//	go test -run '^$' -bench UnaryFloor -benchtime 20000x ./internal/ledgerdtest
func BenchmarkUnaryFloor(b *testing.B) {
	check := func(cc *grpc.ClientConn) func(uint64) error {
		client := healthpb.NewHealthClient(cc)
		return func(uint64) error {
			_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		}
	}
	b.Run("bare", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		testenv.NoError(b, err)
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(lis) }()
		b.Cleanup(srv.Stop)
		key, err := apikeys.Generate(nil) // sent, not checked: the client does what it does for ledgerd
		testenv.NoError(b, err)
		calls(b, lis.Addr().String(), key, check, nil)
	})
	b.Run("ledgerd", func(b *testing.B) {
		l := ledgerdtest.Start(b)
		calls(b, l.Main.GRPCAddr(), l.Key, check, nil)
	})
}

// calls makes b.N calls to addr from 32 goroutines per core over 8 connections,
// with key when it is not "": newCall makes a connection's call, which
// makes the nth. settle, when not nil, runs before the clock stops. It
// reports the allocations of the whole process and its CPU a call.
func calls(b *testing.B, addr, key string, newCall func(*grpc.ClientConn) func(n uint64) error, settle func()) {
	const (
		conns       = 8
		parallelism = 32 // goroutines per GOMAXPROCS: 64 on two cores
	)
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(apikeys.Bearer(key)))
	}
	call := make([]func(uint64) error, conns)
	for i := range call {
		cc, err := grpc.NewClient(addr, opts...)
		testenv.NoError(b, err)
		b.Cleanup(func() { cc.Close() })
		call[i] = newCall(cc)
	}
	var seq, worker atomic.Uint64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := call[int(worker.Add(1))%conns]
		for pb.Next() {
			if err := mine(seq.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if settle != nil {
		settle()
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "go-µs/call")
}

// waitProjections waits until every projection of ledger has applied
// position.
func waitProjections(b *testing.B, queries ledgerv1.QueryServiceClient, ledger string, position uint64) {
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := queries.GetProjectionStatus(ledgerdtest.Ctx(b), &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		testenv.NoError(b, err)
		behind := ""
		if len(s.GetProjections()) == 0 {
			behind = "none listed"
		}
		for _, p := range s.GetProjections() {
			if p.GetPosition() < position {
				behind = fmt.Sprintf("%s at %d", p.GetName(), p.GetPosition())
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("projections not at %d after a minute: %s", position, behind)
		}
		time.Sleep(time.Millisecond)
	}
}

// processCPU is the CPU this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
