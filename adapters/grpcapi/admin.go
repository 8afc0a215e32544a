package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// AdminServer serves ledger.v1.AdminService.
type AdminServer struct {
	ledgerv1.UnimplementedAdminServiceServer
	pool   *pgxpool.Pool
	store  *eventstore.Store
	logger *slog.Logger

	mu sync.Mutex
	// running holds the rebuilds in progress, "ledger/projection": one at a
	// time each, since two would share one shadow.
	running map[string]bool
}

// NewAdminServer returns an AdminServer over the read models in pool and the
// log in store.
func NewAdminServer(pool *pgxpool.Pool, store *eventstore.Store, logger *slog.Logger) *AdminServer {
	if logger == nil {
		logger = slog.Default()
	}
	return &AdminServer{pool: pool, store: store, logger: logger, running: map[string]bool{}}
}

// RebuildProjection rebuilds a projection of a ledger and swaps it in,
// streaming progress; the last message has done set. Cancelled, the rebuild
// keeps its shadow and the next call resumes from it.
//
// Errors: InvalidArgument on ledger (malformed) or projection (unknown);
// AlreadyExists when the same rebuild runs already in this ledgerd;
// Canceled or DeadlineExceeded with the call; Internal for a database error.
func (s *AdminServer) RebuildProjection(req *ledgerv1.RebuildProjectionRequest,
	stream grpc.ServerStreamingServer[ledgerv1.RebuildProjectionResponse]) error {
	ledger := req.GetLedger()
	if !domain.ValidLedgerName(ledger) {
		return invalidArgument("ledger", ledgerNameReason)
	}
	proj, err := projections.ByName(req.GetProjection())
	if err != nil {
		names := make([]string, 0, 3)
		for _, p := range projections.All() {
			names = append(names, p.Name())
		}
		return invalidArgument("projection", "must be one of "+strings.Join(names, ", "))
	}
	key := ledger + "/" + proj.Name()
	s.mu.Lock()
	if s.running[key] {
		s.mu.Unlock()
		return status.Errorf(codes.AlreadyExists, "a rebuild of %s runs already", key)
	}
	s.running[key] = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.running, key); s.mu.Unlock() }()

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var sendErr error
	report := func(p projections.Progress) {
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(&ledgerv1.RebuildProjectionResponse{Position: p.Position, Head: p.Head,
			EventsPerSecond: p.EventsPerSecond, EtaSeconds: p.ETASeconds, Done: p.Done,
			SwappedAtPosition: p.SwappedAt}); sendErr != nil {
			cancel()
		}
	}
	_, err = projections.NewRebuild(s.pool, s.store, ledger, proj, s.logger).Run(ctx, report)
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		st := statusOf(err)
		if status.Code(st) == codes.Internal && !errors.Is(err, context.Canceled) {
			s.logger.Error("rebuild projection", "ledger", ledger, "projection", proj.Name(), "err", err)
		}
		return st
	}
	return nil
}
