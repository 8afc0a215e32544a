package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/eventstore"
)

// Forwarding: any node takes any command. A command for a ledger whose
// writer runs on another node goes there; one for a ledger no node writes
// goes to the least-loaded writer node, unless this node is about as
// loaded; one this node may not decide (its roles, a drain, a standby
// writer) goes to the holder. One hop at most: a forwarded call is decided
// where it lands, or refused there (Unavailable, retry).
const (
	// forwardedHeader marks a forwarded call, with the forwarding node's id.
	forwardedHeader = "x-ledger-forwarded"
	// writerLookupTTL is how long a node remembers where a ledger's writer
	// runs: a lease that moves is found at the next call after it, or at
	// once when the remembered node refuses.
	writerLookupTTL = time.Second
	// writerLookupsMax bounds the ledgers remembered; past it the memory is
	// cleared.
	writerLookupsMax = 4096
	// peerConnsMax bounds the connections kept to other nodes.
	peerConnsMax = 64
	// loadMargin is how many more writers this node must run than the
	// least-loaded writer node before a ledger no node writes goes there
	// rather than here.
	loadMargin = 2
	// writerLookupTimeout bounds the look-up of a ledger's writer.
	writerLookupTimeout = 2 * time.Second
)

// commandServicePrefix is the service whose calls start writers, and so
// the one whose ledgers are placed on the least-loaded node.
const commandServicePrefix = "/ledger.v1.CommandService/"

// peerLoad is a live writer node's load, from the registry.
type peerLoad struct {
	id, addr string
	writers  int
}

// forwarder forwards calls to other nodes.
type forwarder struct {
	m *Main
	// loads is the live, not draining, writer nodes but this one, by
	// load, refreshed at each heartbeat; own is the ledgers whose writer
	// lease this node holds, from the same read (standby writers, which
	// hold none, are not load).
	loads atomic.Pointer[[]peerLoad]
	own   atomic.Pointer[[]string]
	// mine is this node's leases of either role, from the same read (the
	// lease metrics).
	mine atomic.Pointer[[]eventstore.Placement]

	mu      sync.Mutex
	writers map[string]writerSeen
	conns   map[string]*grpc.ClientConn
	// failed holds when a forward to an address last failed for want of
	// the node: it takes no new ledgers for eventstore.NodeLiveWithin after (a node
	// that died still looks live until its heartbeat is that old).
	failed map[string]time.Time
	// moved holds when this node moved a ledger away (rebalance); moving
	// is set while a move runs.
	moved  map[string]time.Time
	moving atomic.Bool

	forwarded atomic.Uint64
}

// writerSeen is where a ledger's writer was found, and when.
type writerSeen struct {
	id, addr string // "" when no node held the lease
	at       time.Time
}

func newForwarder(m *Main) *forwarder {
	return &forwarder{m: m, writers: map[string]writerSeen{}, conns: map[string]*grpc.ClientConn{}, failed: map[string]time.Time{},
		moved: map[string]time.Time{}}
}

// unary is the interceptor: it runs the call here or forwards it.
func (f *forwarder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ledger := ledgerOf(req)
	if ledger == "" || isForwarded(ctx) {
		return handler(ctx, req)
	}
	if strings.HasPrefix(info.FullMethod, commandServicePrefix) && !f.m.ledgers.Runs(ledger) {
		if to := f.placement(ctx, ledger, false); to.addr != "" {
			return f.forward(ctx, ledger, to, info.FullMethod, req)
		}
	}
	resp, err := handler(ctx, req)
	if err == nil || !grpcapi.IsWriterElsewhere(err) {
		return resp, err
	}
	to := f.placement(ctx, ledger, false)
	if to.addr == "" {
		to = f.placement(ctx, ledger, true) // what was remembered sent the call here
	}
	if to.addr != "" {
		return f.forward(ctx, ledger, to, info.FullMethod, req)
	}
	return resp, err
}

// placement is where a call for ledger should go instead of here: the node
// holding its writer lease, or, when none does, the least-loaded writer
// node if this one may not write or runs loadMargin writers more; the zero
// value to stay here. fresh skips what is remembered.
func (f *forwarder) placement(ctx context.Context, ledger string, fresh bool) writerSeen {
	seen, ok := f.writerOf(ctx, ledger, fresh)
	switch {
	case !ok:
		return writerSeen{} // the registry is away: decide here
	case seen.id == f.m.nodeID:
		return writerSeen{}
	case seen.addr != "":
		return seen
	}
	least, ok := f.leastLoaded()
	if !ok || f.m.admitWriter(ledger) == nil && least.writers+loadMargin > f.ownCount() {
		return writerSeen{}
	}
	return writerSeen{id: least.id, addr: least.addr}
}

// leastLoaded is the live writer node, this one aside, that runs the fewest
// writers, leaving out those a forward just failed to reach.
func (f *forwarder) leastLoaded() (peerLoad, bool) {
	loads := f.loads.Load()
	if loads == nil {
		return peerLoad{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range *loads {
		if time.Since(f.failed[l.addr]) > eventstore.NodeLiveWithin {
			return l, true
		}
	}
	return peerLoad{}, false
}

// writerOf is where ledger's writer runs, remembered for writerLookupTTL;
// ok is false when the registry could not be read.
func (f *forwarder) writerOf(ctx context.Context, ledger string, fresh bool) (writerSeen, bool) {
	f.mu.Lock()
	seen, ok := f.writers[ledger]
	f.mu.Unlock()
	if ok && !fresh && time.Since(seen.at) < writerLookupTTL {
		return seen, true
	}
	lctx, cancel := context.WithTimeout(ctx, writerLookupTimeout)
	defer cancel()
	n, held, err := f.m.nodes.WriterOf(lctx, ledger)
	if err != nil {
		return writerSeen{}, false
	}
	seen = writerSeen{at: time.Now()}
	if held {
		seen.id, seen.addr = n.ID, n.GRPCAddr
	}
	f.mu.Lock()
	if len(f.writers) >= writerLookupsMax {
		clear(f.writers)
	}
	f.writers[ledger] = seen
	f.mu.Unlock()
	return seen, true
}

// forward sends the call to the node to, with the caller's key; a node that
// cannot be reached is forgotten as ledger's writer.
func (f *forwarder) forward(ctx context.Context, ledger string, to writerSeen, method string, req any) (any, error) {
	out, err := responseOf(method)
	if err != nil {
		return nil, err
	}
	conn, err := f.conn(to.addr)
	if err != nil {
		return nil, err
	}
	md := metadata.Pairs(forwardedHeader, f.m.nodeID)
	if in, ok := metadata.FromIncomingContext(ctx); ok {
		md.Set("authorization", in.Get("authorization")...)
	}
	f.forwarded.Add(1)
	if err := conn.Invoke(metadata.NewOutgoingContext(ctx, md), method, req, out); err != nil {
		f.mu.Lock()
		delete(f.writers, ledger)
		// Only a node that cannot be reached is passed over, not one whose
		// writer answered Unavailable (a ledger moving to it, a batch
		// refused): that one is where ledgers are going.
		if st := conn.GetState(); status.Code(err) == codes.Unavailable &&
			(st == connectivity.TransientFailure || st == connectivity.Shutdown || st == connectivity.Idle) {
			if len(f.failed) >= peerConnsMax {
				clear(f.failed)
			}
			f.failed[to.addr] = time.Now()
		}
		f.mu.Unlock()
		return nil, err
	}
	return out, nil
}

// conn is a connection to addr, made on first use.
func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	if len(f.conns) >= peerConnsMax {
		// One goes, preferably to an address no live writer node has: the
		// others may carry forwards in flight.
		victim := ""
		for a := range f.conns {
			if victim = a; !f.isPeerAddr(a) {
				break
			}
		}
		_ = f.conns[victim].Close()
		delete(f.conns, victim)
	}
	creds := insecure.NewCredentials()
	if f.m.Config.TLSCert != "" {
		// Nodes serving TLS are reached with TLS, their certificates
		// checked against the system's roots for their addresses.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMsgMax), grpc.MaxCallSendMsgSize(grpcapi.RecvMaxLarge)))
	if err != nil {
		return nil, err
	}
	f.conns[addr] = c
	return c, nil
}

// isPeerAddr says whether addr is a live writer node's, as the last
// heartbeat read them.
func (f *forwarder) isPeerAddr(addr string) bool {
	if loads := f.loads.Load(); loads != nil {
		for _, p := range *loads {
			if p.addr == addr {
				return true
			}
		}
	}
	return false
}

// close closes the connections to other nodes.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.conns {
		_ = c.Close()
		delete(f.conns, a)
	}
}

// refreshLoads reads the live writer nodes' loads (at each heartbeat).
func (f *forwarder) refreshLoads(ctx context.Context) error {
	nodes, err := f.m.nodes.List(ctx)
	if err != nil {
		return err
	}
	places, err := f.m.nodes.Placements(ctx)
	if err != nil {
		return err
	}
	writers := map[string]int{}
	var own []string
	var mine []eventstore.Placement
	for _, p := range places {
		if p.Node == f.m.nodeID {
			mine = append(mine, p)
		}
		if p.Role == eventstore.RoleWriter {
			writers[p.Node]++
			if p.Node == f.m.nodeID {
				own = append(own, p.Ledger)
			}
		}
	}
	f.own.Store(&own)
	f.mine.Store(&mine)
	var loads []peerLoad
	for _, n := range nodes {
		if n.ID == f.m.nodeID || n.Draining || !n.Live || !slices.Contains(n.Roles, eventstore.RoleWriter) {
			continue
		}
		loads = append(loads, peerLoad{id: n.ID, addr: n.GRPCAddr, writers: writers[n.ID]})
	}
	sortLoads(loads)
	f.loads.Store(&loads)
	return nil
}

// ownCount is how many writer leases this node holds, as last read.
func (f *forwarder) ownCount() int {
	if own := f.own.Load(); own != nil {
		return len(*own)
	}
	return 0
}

// rebalance moves one ledger off this node when it holds loadMargin writer
// leases more than the least-loaded live writer node: the ledger's writer
// stops (its batch in flight committed, its lease released) and, for
// movedFor, this node starts no writer for it (admitWriter), so the next
// command for it, here or anywhere, goes to that node. One move at a time,
// on a goroutine of its own (a stop waits for the batch in flight), at most
// one a heartbeat, so that the loads read settle in between.
func (f *forwarder) rebalance() {
	own := f.own.Load()
	least, ok := f.leastLoaded()
	if own == nil || !ok || len(*own) <= least.writers+loadMargin || !f.moving.CompareAndSwap(false, true) {
		return
	}
	ledger := ""
	f.mu.Lock()
	for i := len(*own) - 1; i >= 0 && ledger == ""; i-- {
		if time.Since(f.moved[(*own)[i]]) > movedFor {
			ledger = (*own)[i]
		}
	}
	if ledger != "" {
		if len(f.moved) >= writerLookupsMax {
			clear(f.moved)
		}
		f.moved[ledger] = time.Now()
		delete(f.writers, ledger)
	}
	f.mu.Unlock()
	if ledger == "" {
		f.moving.Store(false)
		return
	}
	f.m.Logger.Info("moving a ledger to a less loaded node", "ledger", ledger, "writers", len(*own),
		"to", least.id, "its writers", least.writers)
	f.m.wg.Add(1)
	go func() {
		defer f.m.wg.Done()
		defer f.moving.Store(false)
		f.m.ledgers.Stop(ledger)
		f.forget(ledger) // a command meanwhile may have looked it up here
	}()
}

// movedFor is how long a node that moved a ledger away starts no writer for
// it: long enough for the next command to reach the node it goes to.
const movedFor = 10 * time.Second

// movedAway says whether this node moved ledger away less than movedFor ago.
func (f *forwarder) movedAway(ledger string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Since(f.moved[ledger]) < movedFor
}

// forget drops what is remembered of where ledger's writer runs.
func (f *forwarder) forget(ledger string) {
	f.mu.Lock()
	delete(f.writers, ledger)
	f.mu.Unlock()
}

// sortLoads orders loads by writers, then id (the same order on every node).
func sortLoads(loads []peerLoad) {
	slices.SortFunc(loads, func(a, b peerLoad) int { return cmp.Or(cmp.Compare(a.writers, b.writers), cmp.Compare(a.id, b.id)) })
}

// isForwarded says whether the call came forwarded from another node.
func isForwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedHeader)) > 0
}

// ledgerOf is the ledger a request names, "" for none.
func ledgerOf(req any) string {
	if r, ok := req.(interface{ GetLedger() string }); ok {
		return r.GetLedger()
	}
	return ""
}

// responseOf is a new, empty response of method (/pkg.Service/Method).
func responseOf(method string) (proto.Message, error) {
	service, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, protoregistry.NotFound
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, protoregistry.NotFound
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}
