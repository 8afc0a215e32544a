package grpcapi

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Bounds of a request message received.
const (
	// RecvMaxLarge bounds a request message of the methods that carry
	// batches (largeRecvMethods): 8,192 transfers of 64 postings fit. It is
	// the server's grpc.MaxRecvMsgSize: grpc-go refuses a longer message
	// from its 5-byte header, before reading it.
	RecvMaxLarge = 64 << 20
	// RecvMaxSmall bounds a request message of every other method: queries,
	// key management, one asset. It is checked once the message is received
	// (RecvSizeUnaryInterceptor): grpc-go has one receive limit per server
	// and no hook between a message's length prefix and its body, so until
	// then such a message may be as long as RecvMaxLarge, and the budget
	// below counts it so.
	RecvMaxSmall = 4 << 20
	// RecvBytesInFlightMax bounds the request bytes being received: 16
	// messages at once (each call counts RecvMaxLarge, see RecvBudget).
	// More wait, their bytes unread (HTTP/2 flow control holds them at the
	// client beyond a stream's window).
	RecvBytesInFlightMax = 1 << 30
	// RecvBytesPerKeyMax bounds what the calls of one API key hold of that
	// budget (4 messages): a key whose calls stall (headers sent, body
	// never) waits on its own share, not on everyone's.
	RecvBytesPerKeyMax = 256 << 20
)

// largeRecvMethods take messages up to RecvMaxLarge: batches of up to 8,192
// items, statements and logs.
var largeRecvMethods = map[string]bool{
	"/ledger.v1.CommandService/OpenAccounts":            true,
	"/ledger.v1.CommandService/CreateTransfers":         true,
	"/ledger.v1.CommandService/PostPendingTransfers":    true,
	"/ledger.v1.CommandService/VoidPendingTransfers":    true,
	"/ledger.v1.CommandService/ReverseTransfers":        true,
	"/ledger.v1.CommandService/SetAccountBounds":        true,
	"/ledger.v1.CommandService/SetAccountMetadata":      true,
	"/ledger.v1.CommandService/CloseAccounts":           true,
	"/ledger.v1.CommandService/DefineCategories":        true, // 1,000 categories of 32 patterns: over 4 MiB
	"/ledger.v1.ReconciliationService/ImportStatement":  true,
	"/ledger.v1.ReconciliationService/SetMatchingRules": true,
	"/ledger.v1.AuditService/ImportEvents":              true,
}

// RecvMax is the bound of a request message of method.
func RecvMax(method string) int {
	if largeRecvMethods[method] {
		return RecvMaxLarge
	}
	return RecvMaxSmall
}

// recvReserve is what a call holds of the budget while its message may be
// read: RecvMaxLarge whatever its method. grpc-go reads a message's 5-byte
// length prefix, compares it with the server's one MaxRecvMsgSize
// (RecvMaxLarge) and then reads, and buffers, the whole message before
// anything of ours runs: a stats.Handler hears of it (InPayload) and a
// codec sees it only once it is read, and MaxRecvMsgSize has no per-method
// form. So a keyed call of a RecvMaxSmall method can make the server buffer
// up to RecvMaxLarge before RecvSizeUnaryInterceptor refuses it, and the
// budget must count that, not its method's bound.
const recvReserve = RecvMaxLarge

// RecvBudget is a stats.Handler that admits a call's message only when
// recvReserve fits in a budget of bytes in flight, and in its key's share
// (RecvBytesPerKeyMax; the key is the one TapHandle found). It runs
// (TagRPC) in the call's own goroutine before gRPC reads the request
// message, and waits there: the message stays unread, and beyond a
// stream's flow-control window unsent. The reservation is given back as
// soon as the call can receive nothing more: a unary call's once its
// message is decoded (UnaryInterceptor, first in the chain: a batch of 200
// bytes holds its 64 MiB for microseconds, so the budget bounds messages
// being received, not calls being served); a call whose client sends one
// message and receives a stream (ReadEvents) once that message is
// received (StreamInterceptor, first in the chain); a client stream
// (ImportEvents) when it ends (stats.End). Only ledger.v1 methods are
// counted, which are all served: a call that is tagged always ends. The
// open methods (reflection, health) have no key to charge and read their
// own requests, OpenRecvMax at most (OpenServices).
type RecvBudget struct {
	sem *semaphore.Weighted
	// reserved is the bytes held now; received counts the wire bytes of the
	// request messages read (InPayload): what the reservations covered.
	reserved, received atomic.Int64

	mu sync.Mutex
	// perKey holds a share per key id: at most apikeys.KeysMax active keys
	// have one (a revoked key's stays, a few bytes).
	perKey map[string]*semaphore.Weighted
}

// NewRecvBudget returns a budget of total bytes (RecvBytesInFlightMax when
// 0); total must be at least RecvMaxLarge.
func NewRecvBudget(total int64) *RecvBudget {
	if total <= 0 {
		total = RecvBytesInFlightMax
	}
	return &RecvBudget{sem: semaphore.NewWeighted(max(total, recvReserve)), perKey: map[string]*semaphore.Weighted{}}
}

// Reserved is the bytes the calls being received hold of the budget now.
func (b *RecvBudget) Reserved() int64 { return b.reserved.Load() }

// Received is the bytes of request messages (on the wire) read so far, of
// the methods counted.
func (b *RecvBudget) Received() int64 { return b.received.Load() }

type reservation struct {
	n    int64
	key  *semaphore.Weighted // nil without a key
	once sync.Once
}

type reservationKey struct{}

// TagRPC reserves the call's bytes, waiting for them; a call whose context
// ends first goes on unreserved, to fail on its ended context.
func (b *RecvBudget) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if _, ok := methodRoles[info.FullMethodName]; !ok {
		return ctx
	}
	r := &reservation{n: recvReserve}
	if key, ok := KeyFrom(ctx); ok {
		r.key = b.share(key.ID)
		if err := r.key.Acquire(ctx, r.n); err != nil {
			return ctx
		}
	}
	if err := b.sem.Acquire(ctx, r.n); err != nil {
		if r.key != nil {
			r.key.Release(r.n)
		}
		return ctx
	}
	b.reserved.Add(r.n)
	return context.WithValue(ctx, reservationKey{}, r)
}

// share is key's share of the budget.
func (b *RecvBudget) share(key string) *semaphore.Weighted {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.perKey[key]
	if !ok {
		s = semaphore.NewWeighted(RecvBytesPerKeyMax)
		b.perKey[key] = s
	}
	return s
}

// HandleRPC counts the bytes of each message received, and returns the
// reservation at the call's end, if it was not returned before.
func (b *RecvBudget) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.InPayload:
		if _, ok := ctx.Value(reservationKey{}).(*reservation); ok {
			b.received.Add(int64(s.WireLength))
		}
	case *stats.End:
		b.release(ctx)
	}
}

// UnaryInterceptor returns a unary call's reservation: its message is
// received and decoded. It goes first in the chain.
func (b *RecvBudget) UnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	b.release(ctx)
	return handler(ctx, req)
}

// StreamInterceptor returns the reservation of a call whose client sends
// one message once that message is received; a client stream keeps its
// reservation until it ends. It goes first in the chain.
func (b *RecvBudget) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.IsClientStream {
		return handler(srv, ss)
	}
	return handler(srv, oneMessageStream{ServerStream: ss, budget: b})
}

// oneMessageStream is the stream of a call whose client sends one message.
type oneMessageStream struct {
	grpc.ServerStream
	budget *RecvBudget
}

func (s oneMessageStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	s.budget.release(s.Context())
	return err
}

// release returns the reservation of the call of ctx, once.
func (b *RecvBudget) release(ctx context.Context) {
	if r, ok := ctx.Value(reservationKey{}).(*reservation); ok {
		r.once.Do(func() {
			b.reserved.Add(-r.n)
			b.sem.Release(r.n)
			if r.key != nil {
				r.key.Release(r.n)
			}
		})
	}
}

// TagConn is part of stats.Handler.
func (b *RecvBudget) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn is part of stats.Handler.
func (b *RecvBudget) HandleConn(context.Context, stats.ConnStats) {}

// Bounds of failed authentications per source address.
const (
	// FailedAuthBurst failed authentications a source may make at once.
	FailedAuthBurst = 20
	// FailedAuthEvery is how often a source earns one more, up to the
	// burst: 5 a second.
	FailedAuthEvery = 200 * time.Millisecond
	// FailedAuthSourcesMax bounds the sources remembered. When it is full
	// and none is back to a full burst, a new source is treated as over its
	// limit: keys cached in memory still work for it, others wait.
	FailedAuthSourcesMax = 10_000
)

// failureLimiter is a token bucket of failed authentications per source: an
// IPv4 address, or an IPv6 /64 (one host's usual allocation). A source over
// its limit is refused every key that would cost a look-up.
type failureLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	sources map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(now func() time.Time) *failureLimiter {
	if now == nil {
		now = time.Now
	}
	return &failureLimiter{now: now, sources: map[string]*bucket{}}
}

// tokensAt refills b to t. l.mu must be held.
func (b *bucket) tokensAt(t time.Time) float64 {
	return min(FailedAuthBurst, b.tokens+float64(t.Sub(b.at))/float64(FailedAuthEvery))
}

// blocked says whether source has no failure left to make.
func (l *failureLimiter) blocked(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.sources[source]
	if !ok {
		return len(l.sources) >= FailedAuthSourcesMax && !l.sweep(l.now())
	}
	return b.tokensAt(l.now()) < 1
}

// fail takes one failure from source's bucket.
func (l *failureLimiter) fail(source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.sources[source]
	if !ok {
		if len(l.sources) >= FailedAuthSourcesMax && !l.sweep(now) {
			return // blocked already (see blocked)
		}
		b = &bucket{tokens: FailedAuthBurst, at: now}
		l.sources[source] = b
	}
	b.tokens, b.at = max(b.tokensAt(now)-1, 0), now
}

// sweep forgets the sources back to a full burst (they are as new) and
// says whether room was made. l.mu must be held.
func (l *failureLimiter) sweep(now time.Time) bool {
	for s, b := range l.sources {
		if b.tokensAt(now) >= FailedAuthBurst {
			delete(l.sources, s)
		}
	}
	return len(l.sources) < FailedAuthSourcesMax
}

// SourceOf is the source of a remote address (host:port or a bare host),
// by which failed authentications are rate-limited and ledgerd's
// listeners share their connections: the IPv4 address (an IPv4-mapped IPv6 address as IPv4), or
// the IPv6 /64, whose every address its client may use in turn. A
// link-local address comes with its zone (fe80::1%eth0, the interface it
// came in on), which is dropped with the host bits: such an address must
// not be taken for a host that is no address, each one a source of its
// own.
func SourceOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return host
	case ip.Unmap().Is4():
		return ip.Unmap().String()
	default:
		return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
	}
}

// RecvSizeUnaryInterceptor refuses a request message over its method's
// RecvMax (one of RecvMaxSmall: larger ones gRPC refused already).
//
// Errors: ResourceExhausted.
func RecvSizeUnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkRecvSize(info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// RecvSizeStreamInterceptor checks each message a stream receives, as
// RecvSizeUnaryInterceptor.
func RecvSizeStreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if RecvMax(info.FullMethod) >= RecvMaxLarge {
		return handler(srv, ss)
	}
	return handler(srv, &sizedStream{ServerStream: ss, method: info.FullMethod})
}

type sizedStream struct {
	grpc.ServerStream
	method string
}

func (s *sizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkRecvSize(s.method, m)
}

func checkRecvSize(method string, req any) error {
	limit := RecvMax(method)
	if limit >= RecvMaxLarge {
		return nil
	}
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(m); n > limit {
		return status.Errorf(codes.ResourceExhausted, "request of %d bytes: %s takes at most %d", n, method, limit)
	}
	return nil
}
