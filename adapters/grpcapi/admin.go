package grpcapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/workflows"
)

// AdminServer serves ledger.v1.AdminService.
type AdminServer struct {
	ledgerv1.UnimplementedAdminServiceServer
	store   *eventstore.Store
	keys    Keys
	ledgers LedgerAdmin
	logger  *slog.Logger
	// rebuilds runs RebuildProjection; repair RepairStream (nil: no
	// stream to repair, WithStreams).
	rebuilds *workflows.Rebuilds
	repair   *workflows.StreamRepair
	// nodes and lags serve the registry of nodes (WithNodes).
	nodes NodeRegistry
	lags  Lags
	// streamStallMax replaces StreamStallMax when set (tests).
	streamStallMax time.Duration
}

// Keys manages API keys (apikeys.Store).
type Keys interface {
	Create(ctx context.Context, n apikeys.NewKey) (string, apikeys.Key, error)
	List(ctx context.Context, includeRevoked bool) ([]apikeys.Key, bool, error)
	Revoke(ctx context.Context, id string) (apikeys.Key, error)
}

// NewAdminServer returns an AdminServer over the read models in pool, the
// log in store, the API keys in keys and the ledgers' registry ledgers.
func NewAdminServer(pool *pgxpool.Pool, store *eventstore.Store, keys Keys, ledgers LedgerAdmin, logger *slog.Logger) *AdminServer {
	if logger == nil {
		logger = slog.Default()
	}
	return &AdminServer{store: store, keys: keys, ledgers: ledgers, logger: logger,
		rebuilds: workflows.NewRebuilds(pool, store, logger)}
}

// RebuildProjection rebuilds a projection of a ledger and swaps it in,
// streaming progress; the last message has done set. Cancelled, the rebuild
// keeps its shadow and the next call resumes from it.
//
// Errors: InvalidArgument on ledger (malformed) or projection (unknown);
// NotFound (unknown ledger); AlreadyExists when the same rebuild runs
// already in this ledgerd;
// Canceled or DeadlineExceeded with the call; Internal for a database error.
func (s *AdminServer) RebuildProjection(req *ledgerv1.RebuildProjectionRequest,
	stream grpc.ServerStreamingServer[ledgerv1.RebuildProjectionResponse]) error {
	ledger := req.GetLedger()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The rebuild never waits for its client (progressSender).
	sender := newProgressSender(stream.Send, func(m *ledgerv1.RebuildProjectionResponse) bool { return m.GetDone() }, cancel)
	err := s.rebuilds.Run(ctx, ledger, req.GetProjection(), func(p projections.Progress) {
		sender.offer(&ledgerv1.RebuildProjectionResponse{Position: p.Position, Head: p.Head,
			EventsPerSecond: p.EventsPerSecond, EtaSeconds: p.ETASeconds, Done: p.Done, SwappedAtPosition: p.SwappedAt})
	})
	if sendErr := sender.finish(cmp.Or(s.streamStallMax, StreamStallMax), "rebuild of "+ledger); sendErr != nil {
		return sendErr
	}
	if err != nil {
		return resourceStatusOf(err)
	}
	return nil
}

// WithRebuilt makes s call f with the ledger after each rebuild that swapped
// in (workflows.Rebuilds.WithSwapped); it returns s.
func (s *AdminServer) WithRebuilt(f func(ledger string)) *AdminServer {
	s.rebuilds.WithSwapped(f)
	return s
}

// WithStreams lets s repair streams through streams; it returns s.
func (s *AdminServer) WithStreams(streams workflows.Streams) *AdminServer {
	s.repair = workflows.NewStreamRepair(streams, s.rebuilds)
	return s
}

// RepairStream recreates a ledger's stream from the log and rebuilds its
// projections, streaming progress; the last message has done set.
//
// Errors: InvalidArgument on ledger (malformed); NotFound (unknown ledger);
// AlreadyExists when a repair of the ledger, or a rebuild of one of its
// projections, runs already in this ledgerd; Unimplemented without streams;
// Canceled or DeadlineExceeded with the call; Internal otherwise.
func (s *AdminServer) RepairStream(req *ledgerv1.RepairStreamRequest, stream grpc.ServerStreamingServer[ledgerv1.RepairStreamResponse]) error {
	if s.repair == nil {
		return status.Error(codes.Unimplemented, "this ledgerd has no stream to repair")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The repair never waits for its client (progressSender).
	sender := newProgressSender(stream.Send, func(m *ledgerv1.RepairStreamResponse) bool { return m.GetProjectionDone() || m.GetDone() }, cancel)
	err := s.repair.Repair(ctx, req.GetLedger(), func(p workflows.RepairProgress) {
		sender.offer(&ledgerv1.RepairStreamResponse{Projection: p.Projection, Position: p.Position, Head: p.Head, ProjectionDone: p.Done})
	})
	if err == nil {
		sender.offer(&ledgerv1.RepairStreamResponse{Done: true})
	}
	if sendErr := sender.finish(cmp.Or(s.streamStallMax, StreamStallMax), "repair of "+req.GetLedger()); sendErr != nil {
		return sendErr
	}
	if err != nil {
		return resourceStatusOf(err)
	}
	if by, ok := KeyFrom(stream.Context()); ok {
		s.logger.Info("stream repaired", "ledger", req.GetLedger(), "by", by.ID)
	}
	return nil
}

// CreateApiKey makes a key; its text is in the reply only.
//
// Errors: InvalidArgument on roles, ledgers or description;
// ResourceExhausted at apikeys.KeysMax active keys; Internal otherwise.
func (s *AdminServer) CreateApiKey(ctx context.Context, req *ledgerv1.CreateApiKeyRequest) (*ledgerv1.CreateApiKeyResponse, error) {
	n := apikeys.NewKey{Ledgers: req.GetLedgers(), Description: req.GetDescription()}
	for _, r := range req.GetRoles() {
		n.Roles = append(n.Roles, apikeys.Role(r))
	}
	text, k, err := s.keys.Create(ctx, n)
	if err != nil {
		return nil, keyStatus(err)
	}
	if by, ok := KeyFrom(ctx); ok {
		s.logger.Info("api key created", "id", k.ID, "roles", k.Roles, "ledgers", k.Ledgers, "by", by.ID)
	}
	return &ledgerv1.CreateApiKeyResponse{Key: text, ApiKey: apiKeyOf(k)}, nil
}

// ListApiKeys lists the keys, oldest first, without secrets or hashes.
//
// Errors: Internal.
func (s *AdminServer) ListApiKeys(ctx context.Context, req *ledgerv1.ListApiKeysRequest) (*ledgerv1.ListApiKeysResponse, error) {
	keys, truncated, err := s.keys.List(ctx, req.GetIncludeRevoked())
	if err != nil {
		return nil, keyStatus(err)
	}
	resp := &ledgerv1.ListApiKeysResponse{ApiKeys: make([]*ledgerv1.ApiKey, len(keys)), Truncated: truncated}
	for i, k := range keys {
		resp.ApiKeys[i] = apiKeyOf(k)
	}
	return resp, nil
}

// RevokeApiKey revokes a key; revoking it again answers it as it is.
//
// Errors: InvalidArgument on id; NotFound; Internal.
func (s *AdminServer) RevokeApiKey(ctx context.Context, req *ledgerv1.RevokeApiKeyRequest) (*ledgerv1.RevokeApiKeyResponse, error) {
	k, err := s.keys.Revoke(ctx, req.GetId())
	if err != nil {
		return nil, keyStatus(err)
	}
	if by, ok := KeyFrom(ctx); ok {
		s.logger.Info("api key revoked", "id", k.ID, "by", by.ID)
	}
	return &ledgerv1.RevokeApiKeyResponse{ApiKey: apiKeyOf(k)}, nil
}

// keyStatus translates an error of the key store.
func keyStatus(err error) error {
	var fe *apikeys.FieldError
	switch {
	case errors.As(err, &fe):
		return invalidArgument(fe.Field, fe.Reason)
	case errors.Is(err, apikeys.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, apikeys.ErrTooManyKeys):
		return status.Errorf(codes.ResourceExhausted, "%v: at most %d; revoke some first", err, apikeys.KeysMax)
	}
	return statusOf(err)
}

func apiKeyOf(k apikeys.Key) *ledgerv1.ApiKey {
	out := &ledgerv1.ApiKey{Id: k.ID, Ledgers: k.Ledgers, Description: k.Description, CreatedAt: timestamppb.New(k.CreatedAt)}
	for _, r := range k.Roles {
		out.Roles = append(out.Roles, string(r))
	}
	if !k.RevokedAt.IsZero() {
		out.RevokedAt = timestamppb.New(k.RevokedAt)
	}
	return out
}
