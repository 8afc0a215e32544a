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
// or hostile client); when every one authenticated, the new one is closed.
// So connections without a key cannot lock keyed clients out, and a flood
// of them costs at most max descriptors.
type connLimitListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[string]*limitedConn // by remote address
}

func newConnLimitListener(l net.Listener, max int) *connLimitListener {
	if max <= 0 {
		max = ConnsMaxDefault
	}
	return &connLimitListener{Listener: l, max: max, conns: map[string]*limitedConn{}}
}

type limitedConn struct {
	net.Conn
	l             *connLimitListener
	opened        time.Time
	authenticated bool // under l.mu
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
			return nil, false
		}
		delete(l.conns, victim.RemoteAddr().String())
	}
	l.conns[c.RemoteAddr().String()] = c
	return victim, true
}

// authenticated marks the connection from remote as having made a call
// with a valid key: it is no longer replaced by newcomers.
func (l *connLimitListener) authenticated(remote string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.conns[remote]; ok {
		c.authenticated = true
	}
}

// Close closes the connection and forgets it.
func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.RemoteAddr().String()] == c {
			delete(c.l.conns, c.RemoteAddr().String())
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
