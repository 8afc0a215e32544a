package daemon

import (
	"net"
	"sync"
	"time"

	"github.com/ledgerd/ledger/adapters/grpcapi"
)

// ConnsMaxDefault bounds the connections each listener (gRPC, HTTP) holds:
// both together stay well under a usual file-descriptor limit (Go raises the
// soft limit to the hard one, often 1,048,576 or 20,000; 4,096 per listener
// leaves room for PostgreSQL and NATS).
const ConnsMaxDefault = 4096

// connLimitListener holds at most max connections. At the bound, a new one
// takes the place of the oldest that never authenticated a call (an idle
// or hostile client): the oldest of the source (grpcapi.SourceOf: an IPv4
// address, an IPv6 /64) holding the most such connections if it holds
// more than its share (a quarter of max), else the oldest of all. When
// every one authenticated, it takes the place of the newest of the key
// that authenticated the most, if it holds more than its share (a quarter
// of max; a connection counts for the key of its first call); else the new
// one is closed. So connections without a key cannot lock keyed clients
// out, nor can one key's (a reader's as well as any), one source's flood
// of connections without a key replaces its own and not those other
// clients have just opened, and any flood costs at most max descriptors.
type connLimitListener struct {
	net.Listener
	max int

	mu        sync.Mutex
	conns     map[string]*limitedConn // by remote address
	perKey    map[string]int          // authenticated connections by key
	perSource map[string]int          // connections not authenticated by source
}

func newConnLimitListener(l net.Listener, max int) *connLimitListener {
	if max <= 0 {
		max = ConnsMaxDefault
	}
	return &connLimitListener{Listener: l, max: max, conns: map[string]*limitedConn{}, perKey: map[string]int{},
		perSource: map[string]int{}}
}

type limitedConn struct {
	net.Conn
	l      *connLimitListener
	opened time.Time
	source string // grpcapi.SourceOf its remote address
	// authenticated and key (its first call's) are under l.mu.
	authenticated bool
	key           string
	once          sync.Once
}

// Accept returns the next connection, making room for it (see the type).
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, l: l, opened: time.Now(), source: grpcapi.SourceOf(c.RemoteAddr().String())}
		victim, ok := l.admit(lc)
		if victim != nil {
			_ = victim.Close()
		}
		if ok {
			return lc, nil
		}
		_ = c.Close()
	}
}

// admit registers c, returning the connection it replaces, if any; ok is
// false when there is no room for c.
func (l *connLimitListener) admit(c *limitedConn) (victim *limitedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Listening on several addresses, two connections may come from one
	// remote address: the calls name a connection by it alone, so the
	// second is refused, not counted over the first (whose counts would
	// outlive it, and which would be held outside the bound).
	if _, held := l.conns[c.RemoteAddr().String()]; held {
		return nil, false
	}
	if len(l.conns) >= l.max {
		victim = l.oldestUnauthenticated(l.crowdedSource())
		if victim == nil {
			victim = l.oldestUnauthenticated("")
		}
		if victim == nil {
			victim = l.overShare()
		}
		if victim == nil {
			return nil, false
		}
		l.forget(victim)
	}
	l.conns[c.RemoteAddr().String()] = c
	l.perSource[c.source]++
	return victim, true
}

// share is what a key's authenticated connections, or a source's
// connections not authenticated, may hold of max before a newcomer takes
// one of them first.
func (l *connLimitListener) share() int { return max(l.max/4, 1) }

// crowdedSource returns the source holding the most connections not
// authenticated, if it holds more than its share; "" if none does.
func (l *connLimitListener) crowdedSource() string {
	var crowded string
	for source, n := range l.perSource {
		if n > l.share() && (crowded == "" || n > l.perSource[crowded]) {
			crowded = source
		}
	}
	return crowded
}

// oldestUnauthenticated returns the oldest connection not authenticated,
// of source or, if source is "", of any; nil if there is none.
func (l *connLimitListener) oldestUnauthenticated(source string) *limitedConn {
	var oldest *limitedConn
	for _, o := range l.conns {
		if !o.authenticated && (source == "" || o.source == source) && (oldest == nil || o.opened.Before(oldest.opened)) {
			oldest = o
		}
	}
	return oldest
}

// overShare returns the newest connection of the key that authenticated
// the most, if it holds more than its share of max; nil if none does. The
// newest: the oldest are most likely a service's own (the REST gateway's
// to this server, a pool's first), the newest a flood's.
func (l *connLimitListener) overShare() *limitedConn {
	var hog string
	for key, n := range l.perKey {
		if n > l.share() && (hog == "" || n > l.perKey[hog]) {
			hog = key
		}
	}
	if hog == "" {
		return nil
	}
	var newest *limitedConn
	for _, o := range l.conns {
		if o.authenticated && o.key == hog && (newest == nil || o.opened.After(newest.opened)) {
			newest = o
		}
	}
	return newest
}

// forget drops c from the connections held, under l.mu.
func (l *connLimitListener) forget(c *limitedConn) {
	remote := c.RemoteAddr().String()
	if l.conns[remote] != c {
		return
	}
	delete(l.conns, remote)
	if c.authenticated {
		decrement(l.perKey, c.key)
	} else {
		decrement(l.perSource, c.source)
	}
}

// decrement counts one less for k, dropping it at none.
func decrement(counts map[string]int, k string) {
	if counts[k]--; counts[k] <= 0 {
		delete(counts, k)
	}
}

// authenticated marks the connection from remote as having made a call
// with a valid key, key: it is no longer replaced by newcomers without
// one, and counts for key's share.
func (l *connLimitListener) authenticated(remote, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.conns[remote]; ok && !c.authenticated {
		c.authenticated, c.key = true, key
		l.perKey[key]++
		decrement(l.perSource, c.source)
	}
}

// refused marks the connection from remote as not authenticated again when
// a call on it was refused for key (unknown, revoked, or a source over its
// failed authentications) and key is the one it authenticated with: a
// connection whose key was revoked since would otherwise keep its place
// over newcomers for good. A call with another key changes nothing: a
// connection may carry many clients' calls (the REST gateway's to this
// server, a proxy's), and one client's bad key is no reason to give up
// the others' place.
func (l *connLimitListener) refused(remote, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.conns[remote]; ok && c.authenticated && key != "" && c.key == key {
		decrement(l.perKey, c.key)
		c.authenticated, c.key = false, ""
		l.perSource[c.source]++
	}
}

// refusedCall is refused for the call from remote that authentication
// refused with err, when err refuses it for the key authorization presents
// (grpcapi.RefusedForKey): the REST gateway's and the console's calls, which
// TapHandle does not see.
func (l *connLimitListener) refusedCall(remote string, authorization []string, err error) {
	if grpcapi.RefusedForKey(err) {
		l.refused(remote, grpcapi.PresentedKeyID(authorization))
	}
}

// Close closes the connection and forgets it.
func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.forget(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
