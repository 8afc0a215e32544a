package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/apikeys"
)

// methodRoles is the one table of who may call what: every method of
// ledger.v1 and the role it needs. A method not in it is refused
// (PermissionDenied), so a new method is closed until it is added here.
// The admin role may call every method (apikeys.Key.Has).
var methodRoles = map[string]apikeys.Role{
	"/ledger.v1.CommandService/DefineAsset":          apikeys.RoleWriter,
	"/ledger.v1.CommandService/OpenAccounts":         apikeys.RoleWriter,
	"/ledger.v1.CommandService/CreateTransfers":      apikeys.RoleWriter,
	"/ledger.v1.CommandService/PostPendingTransfers": apikeys.RoleWriter,
	"/ledger.v1.CommandService/VoidPendingTransfers": apikeys.RoleWriter,
	"/ledger.v1.CommandService/ReverseTransfers":     apikeys.RoleWriter,
	"/ledger.v1.CommandService/SetAccountBounds":     apikeys.RoleWriter,
	"/ledger.v1.CommandService/SetAccountMetadata":   apikeys.RoleWriter,
	"/ledger.v1.CommandService/CloseAccounts":        apikeys.RoleWriter,

	"/ledger.v1.QueryService/GetBalances":         apikeys.RoleReader,
	"/ledger.v1.QueryService/ListStatement":       apikeys.RoleReader,
	"/ledger.v1.QueryService/GetTransfers":        apikeys.RoleReader,
	"/ledger.v1.QueryService/ListTransfers":       apikeys.RoleReader,
	"/ledger.v1.QueryService/GetTrialBalance":     apikeys.RoleReader,
	"/ledger.v1.QueryService/GetProjectionStatus": apikeys.RoleReader,

	"/ledger.v1.ReconciliationService/ImportStatement":   apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/SetMatchingRules":  apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/MatchManually":     apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/Unmatch":           apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/GetReconciliation": apikeys.RoleReader,
	"/ledger.v1.ReconciliationService/ListUnmatched":     apikeys.RoleReader,
	"/ledger.v1.ReconciliationService/GetDailyJournal":   apikeys.RoleReader,

	"/ledger.v1.AuditService/ReadEvents": apikeys.RoleAuditor,
	// An import writes a whole log, unchecked by the writer: admin only.
	"/ledger.v1.AuditService/ImportEvents": apikeys.RoleAdmin,

	"/ledger.v1.AdminService/RebuildProjection": apikeys.RoleAdmin,
	"/ledger.v1.AdminService/CreateApiKey":      apikeys.RoleAdmin,
	"/ledger.v1.AdminService/ListApiKeys":       apikeys.RoleAdmin,
	"/ledger.v1.AdminService/RevokeApiKey":      apikeys.RoleAdmin,
	// Creating a ledger is an admin act: each costs the process a writer and
	// is kept forever. Its status is anyone's to read.
	"/ledger.v1.AdminService/CreateLedger":    apikeys.RoleAdmin,
	"/ledger.v1.AdminService/ArchiveLedger":   apikeys.RoleAdmin,
	"/ledger.v1.AdminService/UnarchiveLedger": apikeys.RoleAdmin,
	"/ledger.v1.AdminService/GetLedger":       apikeys.RoleReader,
	"/ledger.v1.AdminService/ListLedgers":     apikeys.RoleAdmin,
}

// openMethodPrefixes need no key: server reflection (grpcurl list) and
// health checks say nothing about any ledger.
var openMethodPrefixes = []string{
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
	"/grpc.health.v1.Health/",
}

// KeyVerifier verifies a key's text (apikeys.Store).
type KeyVerifier interface {
	Verify(ctx context.Context, text string) (apikeys.Key, error)
}

// Auth authenticates every call by its API key and authorizes it by the
// method's role and the ledger it names. Its interceptors go after the
// metrics', so that refused calls are counted with their codes.
type Auth struct {
	keys   KeyVerifier
	logger *slog.Logger
}

// NewAuth returns an Auth verifying keys with keys.
func NewAuth(keys KeyVerifier, logger *slog.Logger) *Auth {
	if logger == nil {
		logger = slog.Default()
	}
	return &Auth{keys: keys, logger: logger}
}

// ledgered is every ledger.v1 request that names a ledger.
type ledgered interface{ GetLedger() string }

type keyContext struct{}

// KeyFrom returns the key a call was authenticated with; ok is false when
// auth is off or the method is open.
func KeyFrom(ctx context.Context) (apikeys.Key, bool) {
	k, ok := ctx.Value(keyContext{}).(apikeys.Key)
	return k, ok
}

// UnaryInterceptor authorizes a unary call, its request's ledger included.
func (a *Auth) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if open(info.FullMethod) {
		return handler(ctx, req)
	}
	key, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := scope(key, info.FullMethod, req, true); err != nil {
		return nil, err
	}
	return handler(context.WithValue(ctx, keyContext{}, key), req)
}

// StreamInterceptor authorizes a streaming call, then the ledger of every
// message it receives: a client stream (ImportEvents) names its ledger in
// its first message, and a later message may not name another.
func (a *Auth) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if open(info.FullMethod) {
		return handler(srv, ss)
	}
	key, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &scopedStream{ServerStream: ss, key: key, method: info.FullMethod,
		ctx: context.WithValue(ss.Context(), keyContext{}, key)})
}

// scopedStream checks the ledger of each message received.
type scopedStream struct {
	grpc.ServerStream
	key      apikeys.Key
	method   string
	ctx      context.Context
	received bool
}

func (s *scopedStream) Context() context.Context { return s.ctx }

func (s *scopedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	first := !s.received
	s.received = true
	return scope(s.key, s.method, m, first)
}

func open(method string) bool {
	for _, p := range openMethodPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// authorize authenticates the call's key and checks it has the method's role.
//
// Errors: Unauthenticated (no key, malformed, unknown or revoked);
// Unavailable when the key could not be checked; PermissionDenied (a method
// not in the table, or a role the key lacks).
func (a *Auth) authorize(ctx context.Context, method string) (apikeys.Key, error) {
	text, err := bearer(ctx)
	if err != nil {
		return apikeys.Key{}, err
	}
	key, err := a.keys.Verify(ctx, text)
	switch {
	case errors.Is(err, apikeys.ErrMalformed):
		return apikeys.Key{}, status.Error(codes.Unauthenticated, "malformed api key: want lk_<id>_<secret>")
	case errors.Is(err, apikeys.ErrUnknown), errors.Is(err, apikeys.ErrRevoked):
		// One answer for both: a caller learns nothing about which ids exist.
		return apikeys.Key{}, status.Errorf(codes.Unauthenticated, "unknown or revoked api key %s", apikeys.ID(text))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apikeys.Key{}, statusOf(err)
	case err != nil:
		a.logger.Error("verify api key", "key", apikeys.ID(text), "err", err)
		return apikeys.Key{}, status.Error(codes.Unavailable, "cannot verify the api key now: retry")
	}
	role, ok := methodRoles[method]
	if !ok {
		return apikeys.Key{}, status.Errorf(codes.PermissionDenied, "method %s is not open to api keys", method)
	}
	if !key.Has(role) {
		return apikeys.Key{}, status.Errorf(codes.PermissionDenied, "api key %s lacks the %s role that %s needs", key.ID, role, method)
	}
	return key, nil
}

// bearer returns the key of "authorization: Bearer <key>".
//
// Errors: Unauthenticated when there is none, or more than one.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing api key: send the header authorization: Bearer <key>")
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, text, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", status.Error(codes.Unauthenticated, "malformed authorization header: want Bearer <key>")
	}
	return strings.TrimSpace(text), nil
}

// scope checks that the key may touch the ledger a request names. A request
// that names none (GetProjectionStatus of every ledger, key management)
// needs a key of every ledger. In a stream, a message after the first that
// names none continues the first's ledger.
//
// Errors: PermissionDenied.
func scope(key apikeys.Key, method string, req any, first bool) error {
	if key.AllLedgers() {
		return nil
	}
	l, ok := req.(ledgered)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "api key %s is scoped to ledgers; %s needs a key of every ledger", key.ID, method)
	}
	ledger := l.GetLedger()
	if ledger == "" && !first {
		return nil
	}
	if ledger == "" {
		return status.Errorf(codes.PermissionDenied, "api key %s is scoped to ledgers; a request naming no ledger means every ledger", key.ID)
	}
	if !key.AllowsLedger(ledger) {
		return status.Errorf(codes.PermissionDenied, "api key %s may not touch ledger %s", key.ID, ledger)
	}
	return nil
}
