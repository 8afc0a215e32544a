package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

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
	"/ledger.v1.CommandService/DefineCategories":     apikeys.RoleWriter,
	// Closing a period is an act of accounting control, for good: not a
	// payment service's (writer's) to take.
	"/ledger.v1.CommandService/ClosePeriod": apikeys.RoleAdmin,

	"/ledger.v1.QueryService/GetBalances":         apikeys.RoleReader,
	"/ledger.v1.QueryService/ListStatement":       apikeys.RoleReader,
	"/ledger.v1.QueryService/GetTransfers":        apikeys.RoleReader,
	"/ledger.v1.QueryService/ListTransfers":       apikeys.RoleReader,
	"/ledger.v1.QueryService/GetTrialBalance":     apikeys.RoleReader,
	"/ledger.v1.QueryService/GetProjectionStatus": apikeys.RoleReader,
	"/ledger.v1.QueryService/ListPeriods":         apikeys.RoleReader,
	"/ledger.v1.QueryService/ListAssets":          apikeys.RoleReader,
	"/ledger.v1.QueryService/ListAccounts":        apikeys.RoleReader,
	"/ledger.v1.QueryService/ListCategories":      apikeys.RoleReader,
	"/ledger.v1.QueryService/GetCategoryBalances": apikeys.RoleReader,

	"/ledger.v1.ReconciliationService/ImportStatement":   apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/SetMatchingRules":  apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/MatchManually":     apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/Unmatch":           apikeys.RoleWriter,
	"/ledger.v1.ReconciliationService/GetReconciliation": apikeys.RoleReader,
	"/ledger.v1.ReconciliationService/ListUnmatched":     apikeys.RoleReader,
	"/ledger.v1.ReconciliationService/GetDailyJournal":   apikeys.RoleReader,

	"/ledger.v1.MonitoringService/DefineRules":      apikeys.RoleWriter,
	"/ledger.v1.MonitoringService/FreezeAccounts":   apikeys.RoleWriter,
	"/ledger.v1.MonitoringService/UnfreezeAccounts": apikeys.RoleWriter,
	"/ledger.v1.MonitoringService/ListRules":        apikeys.RoleReader,
	"/ledger.v1.MonitoringService/ListAlerts":       apikeys.RoleReader,
	"/ledger.v1.MonitoringService/DryRunRule":       apikeys.RoleReader,

	// Where the ledger's events go, signed with a secret: the admin's.
	"/ledger.v1.WebhookService/CreateSubscription": apikeys.RoleAdmin,
	"/ledger.v1.WebhookService/DeleteSubscription": apikeys.RoleAdmin,
	"/ledger.v1.WebhookService/ReplayDeliveries":   apikeys.RoleAdmin,
	"/ledger.v1.WebhookService/ListSubscriptions":  apikeys.RoleReader,
	"/ledger.v1.WebhookService/ListDeliveries":     apikeys.RoleReader,

	"/ledger.v1.AuditService/ReadEvents": apikeys.RoleAuditor,
	// Every statement line at once: what audit verify compares.
	"/ledger.v1.AuditService/ReadStatementLines": apikeys.RoleAuditor,
	// An import writes a whole log, unchecked by the writer: admin only.
	"/ledger.v1.AuditService/ImportEvents": apikeys.RoleAdmin,

	"/ledger.v1.AdminService/RebuildProjection": apikeys.RoleAdmin,
	"/ledger.v1.AdminService/RepairStream":      apikeys.RoleAdmin,
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
	// Where ledgers run, and moving them, are the operators'.
	"/ledger.v1.AdminService/ListNodes":      apikeys.RoleAdmin,
	"/ledger.v1.AdminService/DrainNode":      apikeys.RoleAdmin,
	"/ledger.v1.AdminService/ListPlacements": apikeys.RoleAdmin,

	"/ledger.v1.IntegrityService/ListAnchors": apikeys.RoleAuditor,
}

// openMethodPrefixes need no key: server reflection (grpcurl list) and
// health checks say nothing about any ledger.
var openMethodPrefixes = []string{
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
	"/grpc.health.v1.Health/",
}

// KeyVerifier verifies a key's text (apikeys.Store): Verify may look it
// up; Cached answers from memory only (apikeys.ErrNotCached otherwise);
// Active says whether a key verified before is still in memory, fresh and
// not revoked.
type KeyVerifier interface {
	Verify(ctx context.Context, text string) (apikeys.Key, error)
	Cached(text string) (apikeys.Key, error)
	Active(id string) bool
}

// tapVerifyTimeout bounds a key's look-up in TapHandle, which holds up the
// reading of its connection meanwhile.
const tapVerifyTimeout = 2 * time.Second

// Auth authenticates every call by its API key and authorizes it by the
// method's role and the ledger it names. TapHandle checks the key and the
// role before gRPC reads the request; the interceptors check that the key
// is still active (a call's body may come long after its headers, and the
// key be revoked meanwhile) and the ledger the request names. The interceptors go
// after the metrics', so that refused calls are counted with their codes.
//
// Failed authentications are rate limited per source address
// (FailedAuthBurst, FailedAuthEvery): a source over its limit is refused
// (ResourceExhausted) any key that would cost a PostgreSQL look-up.
type Auth struct {
	keys     KeyVerifier
	logger   *slog.Logger
	failures *failureLimiter
	// OnAuthenticated, when set, is told the remote address (host:port)
	// and the key id of each call authenticated by TapHandle
	// (internal/daemon keeps such connections over idle ones without a
	// key, within a share per key).
	OnAuthenticated func(remote, key string)
	// OnUnauthenticated, when set, is told the remote address of each call
	// TapHandle refuses for its key (Unauthenticated, or ResourceExhausted
	// for its source's failures) and the id of the key it presented ("" for
	// none or a malformed one): a connection that authenticated with that
	// key loses what OnAuthenticated gave it.
	OnUnauthenticated func(remote, key string)
	// OnRefused, when set, is told the code of each call TapHandle refuses
	// (such calls never reach the interceptors, metrics' included).
	OnRefused func(code codes.Code)
}

// NewAuth returns an Auth verifying keys with keys.
func NewAuth(keys KeyVerifier, logger *slog.Logger) *Auth {
	if logger == nil {
		logger = slog.Default()
	}
	return &Auth{keys: keys, logger: logger, failures: newFailureLimiter(nil)}
}

// TapHandle authenticates a call and checks its method's role from its
// headers alone, before gRPC reads its message: a call without a valid key
// costs its headers, not its (up to RecvMaxLarge) body. The ledger scope
// needs the message: the interceptors check it.
//
// Errors: those of Authenticate; PermissionDenied (see authorize).
func (a *Auth) TapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if open(info.FullMethodName) {
		return ctx, nil
	}
	var remote string
	if p, ok := peer.FromContext(ctx); ok {
		remote = addrString(p.Addr)
	}
	key, err := a.authenticate(ctx, remote, info.Header.Get("authorization"), tapVerifyTimeout)
	if err == nil {
		err = permit(key, info.FullMethodName)
	}
	if err != nil {
		if a.OnRefused != nil {
			a.OnRefused(status.Code(err))
		}
		if a.OnUnauthenticated != nil && remote != "" && RefusedForKey(err) {
			a.OnUnauthenticated(remote, PresentedKeyID(info.Header.Get("authorization")))
		}
		return nil, err
	}
	if a.OnAuthenticated != nil && remote != "" {
		a.OnAuthenticated(remote, key.ID)
	}
	// For RecvBudget's share per key, and for the interceptors: the key
	// was verified and permitted for this method from these headers, so
	// they need not hash its secret again.
	return context.WithValue(ctx, keyContext{}, callKey{key: key, tappedFor: info.FullMethodName}), nil
}

// RefusedForKey says err refuses a call for its key: none, unknown,
// revoked, or its source over its failed authentications; not for a role
// the key lacks, nor a key that could not be checked.
func RefusedForKey(err error) bool {
	c := status.Code(err)
	return c == codes.Unauthenticated || c == codes.ResourceExhausted
}

// PresentedKeyID is the id of the one key authorization presents, whether
// or not it is valid; "" for none, several or a malformed one.
func PresentedKeyID(authorization []string) string {
	text, err := bearerOf(authorization)
	if err != nil {
		return ""
	}
	return apikeys.ID(text)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// ledgered is every ledger.v1 request that names a ledger.
type ledgered interface{ GetLedger() string }

// keyContext holds a call's callKey.
type keyContext struct{}

// callKey is the key a call was authenticated with, and the method
// TapHandle verified and permitted it for ("" when an interceptor did).
type callKey struct {
	key       apikeys.Key
	tappedFor string
}

// KeyFrom returns the key a call was authenticated with; ok is false when
// auth is off or the method is open.
func KeyFrom(ctx context.Context) (apikeys.Key, bool) {
	c, ok := ctx.Value(keyContext{}).(callKey)
	return c.key, ok
}

// UnaryInterceptor authorizes a unary call, its request's ledger included.
func (a *Auth) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if open(info.FullMethod) {
		return handler(ctx, req)
	}
	key, tapped, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := scope(key, info.FullMethod, req, true); err != nil {
		return nil, err
	}
	if !tapped {
		ctx = context.WithValue(ctx, keyContext{}, callKey{key: key})
	}
	return handler(ctx, req)
}

// StreamInterceptor authorizes a streaming call, then the ledger of every
// message it receives: a client stream (ImportEvents) names its ledger in
// its first message, and a later message may not name another.
func (a *Auth) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if open(info.FullMethod) {
		return handler(srv, ss)
	}
	key, tapped, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	ctx := ss.Context()
	if !tapped {
		ctx = context.WithValue(ctx, keyContext{}, callKey{key: key})
	}
	return handler(srv, &scopedStream{ServerStream: ss, auth: a, key: key, method: info.FullMethod, ctx: ctx})
}

// scopedStream checks, for each message received, that its key is still
// active (a client stream, ImportEvents, may outlive a revocation by as
// long as its client keeps sending) and the message's ledger.
type scopedStream struct {
	grpc.ServerStream
	auth     *Auth
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
	// A key in memory and fresh costs a look-up; else it is verified
	// again from the call's header, which fails once it is revoked.
	if !first && !s.auth.keys.Active(s.key.ID) {
		if _, _, err := s.auth.authorize(s.ServerStream.Context(), s.method); err != nil {
			return err
		}
	}
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

// authorize authenticates the call's key and checks it has the method's
// role; tapped says the key is TapHandle's, already in ctx.
//
// Errors: those of Authenticate; PermissionDenied (a method not in the
// table, or a role the key lacks).
func (a *Auth) authorize(ctx context.Context, method string) (key apikeys.Key, tapped bool, err error) {
	if c, ok := ctx.Value(keyContext{}).(callKey); ok && c.tappedFor == method && a.keys.Active(c.key.ID) {
		// TapHandle verified the secret and permitted the method; the key
		// has not been revoked since (the body may come much later).
		return c.key, true, nil
	}
	var remote string
	if p, ok := peer.FromContext(ctx); ok {
		remote = addrString(p.Addr)
	}
	if key, err = a.Authenticate(ctx, remote, metadata.ValueFromIncomingContext(ctx, "authorization")); err != nil {
		return apikeys.Key{}, false, err
	}
	if err := permit(key, method); err != nil {
		return apikeys.Key{}, false, err
	}
	return key, false, nil
}

// Authenticate returns the key of an authorization header's values, sent
// from the remote address (host:port) given. The gRPC server and the REST
// gateway (before it reads a body) both call it.
//
// Errors: Unauthenticated (no key, malformed, unknown or revoked);
// ResourceExhausted when the source made too many failed authentications
// and the key is not in memory; Unavailable when the key could not be
// checked; Canceled or DeadlineExceeded with ctx.
func (a *Auth) Authenticate(ctx context.Context, remote string, authorization []string) (apikeys.Key, error) {
	return a.authenticate(ctx, remote, authorization, 0)
}

// AuthenticateFor is Authenticate, then the check that the key has the
// role method needs: what TapHandle checks of a gRPC call from its headers,
// for a caller that knows the method before it reads the request (the REST
// gateway, from the route).
//
// Errors: those of Authenticate; PermissionDenied (a method not in the
// table, or a role the key lacks).
func (a *Auth) AuthenticateFor(ctx context.Context, remote string, authorization []string, method string) (apikeys.Key, error) {
	key, err := a.Authenticate(ctx, remote, authorization)
	if err != nil {
		return apikeys.Key{}, err
	}
	if err := permit(key, method); err != nil {
		return apikeys.Key{}, err
	}
	return key, nil
}

// authenticate is Authenticate, with a look-up of the key (a cache miss)
// bounded by lookupMax when it is not 0. A key the cache answers for costs
// no context: TapHandle's bound is set only when a look-up is needed.
func (a *Auth) authenticate(ctx context.Context, remote string, authorization []string, lookupMax time.Duration) (apikeys.Key, error) {
	text, err := bearerOf(authorization)
	if err != nil {
		return apikeys.Key{}, err
	}
	// A key in memory is answered for whatever its source's failures, so
	// the source (parsed from the address) is only worked out without one.
	key, err := a.keys.Cached(text)
	if err == nil {
		return key, nil
	}
	source := SourceOf(remote)
	if a.failures.blocked(source) {
		if errors.Is(err, apikeys.ErrNotCached) {
			return apikeys.Key{}, status.Errorf(codes.ResourceExhausted,
				"too many failed authentications from %s: retry in a few seconds", source)
		}
	} else {
		// Every failure, remembered or not, is Verify's to tell.
		vctx := ctx
		if lookupMax > 0 {
			var cancel context.CancelFunc
			vctx, cancel = context.WithTimeout(ctx, lookupMax)
			defer cancel()
		}
		key, err = a.keys.Verify(vctx, text)
	}
	switch {
	case errors.Is(err, apikeys.ErrMalformed):
		a.failures.fail(source)
		return apikeys.Key{}, status.Error(codes.Unauthenticated, "malformed api key: want lk_<id>_<secret>")
	case errors.Is(err, apikeys.ErrUnknown), errors.Is(err, apikeys.ErrRevoked):
		a.failures.fail(source)
		// One answer for both: a caller learns nothing about which ids exist.
		return apikeys.Key{}, status.Errorf(codes.Unauthenticated, "unknown or revoked api key %s", apikeys.ID(text))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apikeys.Key{}, statusOf(err)
	case err != nil:
		a.logger.Error("verify api key", "key", apikeys.ID(text), "err", err)
		return apikeys.Key{}, status.Error(codes.Unavailable, "cannot verify the api key now: retry")
	}
	return key, nil
}

// permit checks that key has the role method needs.
//
// Errors: PermissionDenied.
func permit(key apikeys.Key, method string) error {
	role, ok := methodRoles[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "method %s is not open to api keys", method)
	}
	if !key.Has(role) {
		return status.Errorf(codes.PermissionDenied, "api key %s lacks the %s role that %s needs", key.ID, role, method)
	}
	return nil
}

// bearerOf returns the key of "authorization: Bearer <key>", given the
// header's values.
//
// Errors: Unauthenticated when there is none, or more than one.
func bearerOf(vals []string) (string, error) {
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
