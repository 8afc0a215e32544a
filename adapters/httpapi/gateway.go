// Package httpapi serves ledger.v1 as REST/JSON: a grpc-gateway reverse proxy,
// with the routes of api/ledger/v1/ledger.gateway.yaml, in front of ledgerd's
// own gRPC server.
//
// The gateway dials the gRPC listener (on loopback) instead of calling the
// servers in process (RegisterXServiceHandlerServer): a REST call then runs
// exactly what a gRPC call runs (interceptors for metrics and API keys,
// message bounds, the gRPC status of adapters/grpcapi), at the cost of one
// loopback hop. The Authorization header is forwarded as gRPC metadata.
//
// Errors are not translated here (but for the gateway's own decoding faults,
// given the shape of every other bad field: see decode.go): grpc-gateway maps the gRPC status to an
// HTTP status (InvalidArgument 400, NotFound 404, Unimplemented 501,
// Unavailable 503, DeadlineExceeded 504, ...) and writes the google.rpc.Status
// as JSON: {"code": 3, "message": "...", "details": [{"@type":
// "type.googleapis.com/google.rpc.BadRequest", "field_violations": [...]}]}.
package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/sync/semaphore"
	// Error details (google.rpc.BadRequest) are google.protobuf.Any: their
	// types must be linked in for the JSON error body to carry them.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// BodyMaxDefault bounds the request body of a batch route (largeBodyRoute):
// 64 MiB, as a gRPC message. JSON is bigger than protobuf, so the very
// largest batches fit only over gRPC.
const BodyMaxDefault = 64 << 20

// BodyMaxSmall bounds the request body of every other route (queries, key
// management, one asset), as grpcapi.RecvMaxSmall bounds their messages.
const BodyMaxSmall = 4 << 20

// messageMax bounds a gRPC message between the gateway and the server, as the
// server does (internal/daemon's grpcMsgMax): the default 4 MiB receive limit
// would refuse the replies of large batches.
const messageMax = 64 << 20

// Options configures a Gateway. The zero value is ready to use.
type Options struct {
	// BodyMax bounds a request body in bytes; 0: BodyMaxDefault.
	BodyMax int64
	// DialOptions are applied after the defaults (plaintext, 64 MiB
	// messages), e.g. transport credentials when gRPC serves TLS.
	DialOptions []grpc.DialOption
	// Authorize, when set, checks a request's key and that it may call
	// method (the gRPC full method name its route calls, "" for a route
	// the gateway cannot name) before its body is read, and returns the
	// key's id, whose share of the bodies in flight the body takes
	// (BodiesInFlightPerKeyMax; "": none), or a gRPC status error to
	// answer instead; the ledger scope, which needs the message, is the
	// gRPC server's. It is called only for a request that matched a route.
	Authorize func(r *http.Request, method string) (key string, err error)
	// BodiesInFlightMax bounds the bytes of request bodies the gateway
	// reads at once, all calls together; 0: BodiesInFlightMaxDefault.
	// BodiesInFlightPerKeyMax bounds what the bodies of one key (the one
	// Authorize returns) hold of it; 0: a quarter of BodiesInFlightMax.
	// Both are at least BodyMax. BodyWait bounds how long a call waits for
	// room before it is refused (ResourceExhausted, 429); 0:
	// bodyWaitDefault.
	BodiesInFlightMax       int64
	BodiesInFlightPerKeyMax int64
	BodyWait                time.Duration
	// ImportIdle bounds how long a log import's body may send nothing
	// before the call fails; 0: ImportIdleDefault.
	ImportIdle time.Duration
}

// BodiesInFlightMaxDefault bounds the request bodies read at once: a body
// is held by its decoder, then as its message, then as the gRPC request,
// and the gRPC server's receive budget (grpcapi.RecvBudget) sees only the
// last, after the gateway has read the whole body. A body takes room as its
// bytes arrive (meteredBody), up to its route's bound, or a message's bound
// for a log import.
const BodiesInFlightMaxDefault = 256 << 20

// bodiesPerKeyDivisor makes the default share of one key of the bodies in
// flight (Options.BodiesInFlightPerKeyMax): a quarter, as the gRPC
// server's (grpcapi.RecvBytesPerKeyMax of grpcapi.RecvBytesInFlightMax).
// Without one, a key whose uploads stall (headers sent, the body never
// finished) could hold the whole budget, and every other key's bodies
// would be refused after BodyWait.
const bodiesPerKeyDivisor = 4

// bodyWaitDefault is how long a call waits for room among the bodies in
// flight before it is refused: room comes back as calls end.
const bodyWaitDefault = 10 * time.Second

// Gateway is an http.Handler serving ledger.v1's CommandService and
// QueryService as REST/JSON by calling a gRPC server.
type Gateway struct {
	conn      *connPool
	mux       *runtime.ServeMux
	bodyMax   int64
	authorize func(r *http.Request, method string) (string, error)
	// bodies holds the bytes reserved by the bodies being read, at most
	// bodiesMax; shares holds what each key's bodies reserved of them;
	// bodyWait bounds a wait for room.
	bodies    *semaphore.Weighted
	bodiesMax int64
	shares    *keyShares
	bodyWait  time.Duration
	// importIdle bounds a log import's wait for a byte of its body.
	importIdle time.Duration
}

// NewGateway returns a Gateway calling the gRPC server at grpcAddr
// (host:port). It connects lazily: a server not yet serving is no error.
// Close releases the connection.
//
// Errors: an address or option grpc.NewClient refuses.
func NewGateway(grpcAddr string, opts Options) (*Gateway, error) {
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(messageMax), grpc.MaxCallSendMsgSize(messageMax)),
	}, opts.DialOptions...)
	conn, err := dialPool(grpcAddr, gatewayConns, dial)
	if err != nil {
		return nil, err
	}
	g := &Gateway{conn: conn, bodyMax: opts.BodyMax, authorize: opts.Authorize, bodyWait: cmp.Or(opts.BodyWait, bodyWaitDefault),
		importIdle: cmp.Or(opts.ImportIdle, ImportIdleDefault)}
	g.mux = newServeMux(g.admit)
	if g.bodyMax <= 0 {
		g.bodyMax = BodyMaxDefault
	}
	// Room for one body of the largest bound, at least: a smaller budget
	// would refuse such a body after waiting, however idle the gateway.
	g.bodiesMax = max(cmp.Or(opts.BodiesInFlightMax, BodiesInFlightMaxDefault), g.bodyMax)
	g.bodies = semaphore.NewWeighted(g.bodiesMax)
	// As much as the budget at most, and room for one body of the largest
	// bound at least, for the same reason.
	perKey := cmp.Or(opts.BodiesInFlightPerKeyMax, g.bodiesMax/bodiesPerKeyDivisor)
	g.shares = newKeyShares(min(max(perKey, g.bodyMax), g.bodiesMax))
	// The context is only the registration's: each call runs on its request's.
	ctx := context.Background()
	// In this order, as before: a pattern registered later wins a tie.
	for _, r := range []struct {
		name     string
		register func() error
	}{
		{"CommandService", func() error {
			return ledgerv1.RegisterCommandServiceHandlerClient(ctx, g.mux, ledgerv1.NewCommandServiceClient(conn))
		}},
		{"QueryService", func() error {
			return ledgerv1.RegisterQueryServiceHandlerClient(ctx, g.mux, ledgerv1.NewQueryServiceClient(conn))
		}},
		{"AuditService", func() error {
			return ledgerv1.RegisterAuditServiceHandlerClient(ctx, g.mux, ledgerv1.NewAuditServiceClient(conn))
		}},
		{"AdminService", func() error {
			return ledgerv1.RegisterAdminServiceHandlerClient(ctx, g.mux, ledgerv1.NewAdminServiceClient(conn))
		}},
		{"ReconciliationService", func() error {
			return ledgerv1.RegisterReconciliationServiceHandlerClient(ctx, g.mux, ledgerv1.NewReconciliationServiceClient(conn))
		}},
		{"IntegrityService", func() error {
			return ledgerv1.RegisterIntegrityServiceHandlerClient(ctx, g.mux, ledgerv1.NewIntegrityServiceClient(conn))
		}},
		{"MonitoringService", func() error {
			return ledgerv1.RegisterMonitoringServiceHandlerClient(ctx, g.mux, ledgerv1.NewMonitoringServiceClient(conn))
		}},
		{"WebhookService", func() error {
			return ledgerv1.RegisterWebhookServiceHandlerClient(ctx, g.mux, ledgerv1.NewWebhookServiceClient(conn))
		}},
	} {
		if err := r.register(); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("register %s: %w", r.name, err)
		}
	}
	return g, nil
}

// newServeMux is grpc-gateway's mux speaking the proto's JSON: snake_case
// field names as in ledger.proto, enums by name, unset fields left out, and
// unknown fields refused (a misspelt "atomic" must not be dropped silently),
// and a body or query that does not decode refused like any bad field: a
// google.rpc.BadRequest naming it (see decode.go). admit runs on every
// routed request before its handler.
func newServeMux(admit runtime.Middleware) *runtime.ServeMux {
	marshaler := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false, UseEnumNumbers: false},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	opts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, fieldNamingJSON{marshaler}),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithMiddlewares(admit),
	}
	queryParserOnce.Do(func() { opts = append(opts, runtime.SetQueryParameterParser(fieldNamingQuery{})) })
	return runtime.NewServeMux(opts...)
}

// queryParserOnce sets the query parser once per process: grpc-gateway keeps
// it in a package variable, not in the mux, so setting it for a second
// gateway while the first serves (several ledgerd in one test process) is
// a data race. Every gateway uses the same parser.
var queryParserOnce sync.Once

// routingError answers a path no rule matches with 404 and a known path
// with the wrong method with 405: grpc-gateway's default says 501 for the
// latter, which would read as "method not implemented by the server".
func routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus == http.StatusMethodNotAllowed {
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        status.Errorf(codes.Unimplemented, "method %s not allowed on %s", r.Method, r.URL.Path),
		})
		return
	}
	runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
}

// ServeHTTP serves one REST call: the mux routes it, and admit checks it
// before its handler reads its body. A call a browser makes for another
// site's page is refused first (see browserRefusal).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := browserRefusal(r); err != nil {
		g.refuse(w, r, err)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// bodyContentTypes are the media types a request body may declare: JSON,
// and newline-delimited JSON (POST /v1/events:import, a message a line).
// Neither is one a browser may send to another site without asking it
// first (a CORS preflight, which the gateway does not answer), as it may
// text/plain, a form or no type at all.
var bodyContentTypes = map[string]bool{"application/json": true, "application/x-ndjson": true}

// browserRefusal refuses what a web page could make the operator's browser
// send to ledgerd: with -auth=false (a dev machine), nothing else stops a
// page of any site from changing a ledger on loopback. A request a browser
// says comes from another site (Sec-Fetch-Site: cross-site) is refused
// (PermissionDenied, 403), and so is a body of another type than
// bodyContentTypes, which an older browser sends without saying where from
// (InvalidArgument, 415). ledgerctl speaks gRPC; curl needs
// -H 'Content-Type: application/json'.
func browserRefusal(r *http.Request) error {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return &runtime.HTTPStatusError{HTTPStatus: http.StatusForbidden,
			Err: status.Error(codes.PermissionDenied, "a request from another site's page (Sec-Fetch-Site: cross-site) is refused")}
	}
	ct := r.Header.Get("Content-Type")
	if r.ContentLength == 0 {
		// A route that takes no body (archive, revoke, rebuild) is what an
		// empty form of another site's page posts: its type, or the Origin
		// the browser names, gives it away. curl -X POST sends neither.
		if r.Method != http.MethodGet && r.Method != http.MethodHead && (ct != "" && !bodyType(ct) || foreignOrigin(r)) {
			return &runtime.HTTPStatusError{HTTPStatus: http.StatusForbidden,
				Err: status.Errorf(codes.PermissionDenied, "a bodyless %s from another site's page (Content-Type %q, Origin %q) is refused",
					r.Method, ct, r.Header.Get("Origin"))}
		}
		return nil
	}
	if bodyType(ct) {
		return nil
	}
	return &runtime.HTTPStatusError{HTTPStatus: http.StatusUnsupportedMediaType,
		Err: status.Errorf(codes.InvalidArgument, "a body of Content-Type %q: send Content-Type: application/json", ct)}
}

// bodyType says whether ct is one of bodyContentTypes.
func bodyType(ct string) bool {
	media, _, err := mime.ParseMediaType(ct)
	return err == nil && bodyContentTypes[media]
}

// foreignOrigin says whether r names an Origin other than the host it was
// sent to ("null", a sandboxed or file page, included).
func foreignOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
}

// admit checks a routed request before its handler runs: its key and its
// method's role first (a request without a valid key, or whose key lacks
// the role, costs its headers only), then its body's bound. A body over
// its route's bound is refused with 413 when its length is declared, 400
// when it is found out while reading.
func (g *Gateway) admit(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, pathParams map[string]string) {
		method := gatewayRoutes.method(r)
		var key string
		if g.authorize != nil {
			var err error
			if key, err = g.authorize(r, method); err != nil {
				g.refuse(w, r, err)
				return
			}
		}
		if method == importMethod {
			// A log import streams for as long as the log is: the server's
			// read timeout is for requests of a bounded size, and so is
			// BodyMax; the decoder bounds each of its messages
			// (messageJSONMax), one held at a time, and each read waits at
			// most ImportIdle for a byte. Lifted only now that its caller
			// may import.
			body, err := g.meter(r, key, r.Body, bodyFirst, messageJSONMax)
			if err != nil {
				g.refuse(w, r, err)
				return
			}
			defer body.release()
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			body.idle, body.rc = g.importIdle, rc
			r.Body = body
			next(w, r, pathParams)
			return
		}
		bodyMax := g.bodyMaxOf(method)
		if r.ContentLength > bodyMax {
			g.refuse(w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusRequestEntityTooLarge,
				Err:        status.Errorf(codes.InvalidArgument, "request body of %d bytes, at most %d", r.ContentLength, bodyMax),
			})
			return
		}
		first, room := min(bodyFirst, bodyMax), bodyMax // chunked
		if r.ContentLength >= 0 {
			first, room = r.ContentLength, r.ContentLength
		}
		body, err := g.meter(r, key, http.MaxBytesReader(w, r.Body, bodyMax), first, room)
		if err != nil {
			g.refuse(w, r, err)
			return
		}
		defer body.release()
		r.Body = singleMessageBody{body}
		next(w, r, pathParams)
	}
}

// meter returns body holding first bytes of room among the bodies in
// flight, and of key's share of them (none when key is ""), taking more as
// it is read, up to max; the caller releases it when the call ends. first
// and max are cut to what one body may hold: the whole budget, or key's
// share. It waits at most bodyWait for first: for key's share, then for
// the budget, so a key waiting on its own share holds none of everyone's.
//
// Errors: ResourceExhausted (429) when no room came in time, in key's
// share or in the budget, or when the gateway reads the bodies of
// apikeys.KeysMax keys already; the request's context's when it ended (the
// client left).
func (g *Gateway) meter(r *http.Request, key string, body io.ReadCloser, first, max int64) (*meteredBody, error) {
	limit := g.bodiesMax
	if key != "" {
		limit = g.shares.max
	}
	first, max = min(first, limit), min(max, limit)
	b := &meteredBody{r: body, rooms: g.bodies, roomsMax: g.bodiesMax, max: max}
	if key != "" && max > 0 {
		s, err := g.shares.take(key)
		if err != nil {
			return nil, err
		}
		b.share = s
	}
	if first <= 0 {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.bodyWait)
	defer cancel()
	if s := b.share; s != nil {
		if err := s.room.Acquire(ctx, first); err != nil {
			b.release()
			return nil, refusedOr(r, s.refusal(first))
		}
	}
	if err := g.bodies.Acquire(ctx, first); err != nil {
		if b.share != nil {
			b.share.room.Release(first)
		}
		b.release()
		return nil, refusedOr(r, status.Errorf(codes.ResourceExhausted, "the gateway is reading other request bodies "+
			"(%d bytes asked, %d at most at once): retry", first, g.bodiesMax))
	}
	b.held = first
	return b, nil
}

// refusedOr is refusal, or the status of r's context when it ended: the
// client left, no retry to ask for.
func refusedOr(r *http.Request, refusal error) error {
	if err := r.Context().Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return refusal
}

// refuse answers r with err, as grpc-gateway answers a failed call.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, err error) {
	_, out := runtime.MarshalerForRequest(g.mux, r)
	runtime.DefaultHTTPErrorHandler(r.Context(), g.mux, out, w, r, err)
}

// importMethod is ImportEvents, a client stream of any length.
const importMethod = "/ledger.v1.AuditService/ImportEvents"

// bodyMaxOf is the bound of the body of a call of method: the gateway's
// BodyMax for the methods that take batches (grpcapi's large methods),
// BodyMaxSmall for every other.
func (g *Gateway) bodyMaxOf(method string) int64 {
	if grpcapi.RecvMax(method) == grpcapi.RecvMaxLarge {
		return g.bodyMax
	}
	return min(g.bodyMax, BodyMaxSmall)
}

// Close releases the gRPC connection; calls in flight fail with Canceled.
//
// Errors: those of grpc.ClientConn.Close (closing twice).
func (g *Gateway) Close() error { return g.conn.Close() }
