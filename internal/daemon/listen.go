package daemon

import (
	"net"
	"sync"
	"time"
)

// ConnsMaxDefault bounds the connections each listener (gRPC, HTTP) holds:
// both together stay well under a usual file-descriptor limit (Go raises the
// soft limit to the hard one, often 1,048,576 or 20,000; 4,096 per listener
// leaves room for PostgreSQL and NATS).
const ConnsMaxDefault = 4096

// connLimitListener holds at most max connections. At the bound, a new one
// takes the place of the oldest that never authenticated a call (an idle
// or hostile client); when every one authenticated, of the newest of the
// key that authenticated the most, if it holds more than its share (a
// quarter of max; a connection counts for the key of its first call); else
// the new one is closed. So connections without a key cannot lock keyed
// clients out, nor can one key's (a reader's as well as any), and a flood
// of them costs at most max descriptors.
type connLimitListener struct {
	net.Listener
	max int

	mu     sync.Mutex
	conns  map[string]*limitedConn // by remote address
	perKey map[string]int          // authenticated connections by key
}

func newConnLimitListener(l net.Listener, max int) *connLimitListener {
	if max <= 0 {
		max = ConnsMaxDefault
	}
	return &connLimitListener{Listener: l, max: max, conns: map[string]*limitedConn{}, perKey: map[string]int{}}
}

type limitedConn struct {
	net.Conn
	l      *connLimitListener
	opened time.Time
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
		lc := &limitedConn{Conn: c, l: l, opened: time.Now()}
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
	if len(l.conns) >= l.max {
		for _, o := range l.conns {
			if !o.authenticated && (victim == nil || o.opened.Before(victim.opened)) {
				victim = o
			}
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
	return victim, true
}

// overShare returns the newest connection of the key that authenticated
// the most, if it holds more than its share of max; nil if none does. The
// newest: the oldest are most likely a service's own (the REST gateway's
// to this server, a pool's first), the newest a flood's.
func (l *connLimitListener) overShare() *limitedConn {
	share := max(l.max/4, 1)
	var hog string
	for key, n := range l.perKey {
		if n > share && (hog == "" || n > l.perKey[hog]) {
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
		if l.perKey[c.key]--; l.perKey[c.key] <= 0 {
			delete(l.perKey, c.key)
		}
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
		if l.perKey[c.key]--; l.perKey[c.key] <= 0 {
			delete(l.perKey, c.key)
		}
		c.authenticated, c.key = false, ""
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
