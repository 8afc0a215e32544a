package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestConnLimitListener: at its bound the listener replaces the oldest
// connection that never authenticated; when all did, none of a key over its
// share, it closes the newcomer.
func TestConnLimitListener(t *testing.T) {
	const max = 3
	l, dial, closedByServer := listenLimited(t, max)
	c1, s1 := dial()
	c2, _ := dial()
	_, s3 := dial()
	l.authenticated(s1.RemoteAddr().String(), "k1")
	l.authenticated(s3.RemoteAddr().String(), "k3")
	_, s4 := dial() // the bound: replaces c2, the oldest not authenticated
	if !closedByServer(c2) {
		t.Error("the oldest connection not authenticated: not closed at the bound")
	}
	if n := held(l); n != max {
		t.Errorf("%d connections held, want %d", n, max)
	}
	l.authenticated(s4.RemoteAddr().String(), "k4")
	// All authenticated, none over its key's share: a newcomer is closed.
	c5, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c5.Close()
	if !closedByServer(c5) {
		t.Error("a connection over the bound, all others authenticated: not closed")
	}
	// A connection that goes makes room.
	_ = s1.Close()
	_ = c1
	_, _ = dial()
	if n := held(l); n != max {
		t.Errorf("%d connections held, want %d", n, max)
	}
}

func held(l *connLimitListener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// TestConnLimitListenerShareOfAKey: at its bound, all authenticated, the
// listener gives a newcomer the newest connection of the key holding the
// most, while that key holds more than its share (a quarter of the bound),
// so one key cannot hold every connection; within the shares, the newcomer
// is closed.
func TestConnLimitListenerShareOfAKey(t *testing.T) {
	const max = 8 // a share of 2
	l, dial, closedByServer := listenLimited(t, max)
	var clients []net.Conn
	for range max - 1 { // one key's connections, the oldest first
		c, s := dial()
		l.authenticated(s.RemoteAddr().String(), "hog")
		clients = append(clients, c)
	}
	_, s := dial()
	l.authenticated(s.RemoteAddr().String(), "other")
	for i := range max - 1 - 2 {
		_, s := dial() // the hog's newest goes
		newest := clients[len(clients)-1-i]
		if !closedByServer(newest) {
			t.Fatalf("newcomer %d: the newest connection of the key over its share not closed", i)
		}
		l.authenticated(s.RemoteAddr().String(), fmt.Sprintf("k%d", i))
	}
	if n := held(l); n != max {
		t.Errorf("%d connections held, want %d", n, max)
	}
	// The hog is down to its share: a newcomer is closed, the hog's oldest
	// stay.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(c) {
		t.Error("a newcomer with every key within its share: not closed")
	}
	for _, c := range clients[:2] {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("one of the hog's two oldest connections: %v, want it open", err)
		}
	}
}

// TestConnLimitListenerRefused: a connection refused for the key it
// authenticated with loses its place (the newcomer replaces it) and its key's
// count; it may authenticate again.
func TestConnLimitListenerRefused(t *testing.T) {
	const max = 2
	l, dial, closedByServer := listenLimited(t, max)
	c1, s1 := dial()
	_, s2 := dial()
	l.authenticated(s1.RemoteAddr().String(), "k1")
	l.authenticated(s2.RemoteAddr().String(), "k2")
	// Another key's refusal, or none's, leaves the connection its place.
	l.refused(s1.RemoteAddr().String(), "k2")
	l.refused(s1.RemoteAddr().String(), "")
	l.mu.Lock()
	kept := l.conns[s1.RemoteAddr().String()].authenticated
	l.mu.Unlock()
	if !kept {
		t.Error("a connection lost its place for another key's refusal")
	}
	l.refused(s1.RemoteAddr().String(), "k1")
	l.mu.Lock()
	n, unauthenticated := l.perKey["k1"], l.perSource["127.0.0.1"]
	l.mu.Unlock()
	if n != 0 || unauthenticated != 1 {
		t.Errorf("after its refusal: key k1 counts %d connections, its source %d not authenticated; want 0 and 1", n, unauthenticated)
	}
	_, s3 := dial()
	if !closedByServer(c1) {
		t.Error("a connection refused for its key: not replaced by a newcomer at the bound")
	}
	l.authenticated(s3.RemoteAddr().String(), "k1")
	l.mu.Lock()
	n = l.perKey["k1"]
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("key k1 counts %d connections, want 1", n)
	}
}

// TestConnLimitListenerShareOfASource: at its bound, a newcomer takes the
// place of the oldest connection not authenticated of the source holding
// the most such, while it holds more than its share (a quarter of the
// bound): one address's flood replaces its own connections, not the one
// another client has just opened and not yet authenticated. Within the
// shares, the oldest of all goes.
func TestConnLimitListenerShareOfASource(t *testing.T) {
	const max = 8 // a share of 2
	l, dialFrom, closedByServer := listenLimitedFrom(t, max)
	other, _ := dialFrom("127.0.0.3") // the oldest, not authenticated yet
	var flood []net.Conn
	for range 4 {
		c, _ := dialFrom("127.0.0.2")
		flood = append(flood, c)
	}
	for range 3 {
		_, s := dialFrom("127.0.0.1")
		l.authenticated(s.RemoteAddr().String(), "k")
	}
	// 127.0.0.2 holds 4 of 8, over its share: a newcomer from it, and one
	// from elsewhere, each take the place of its oldest.
	flood = append(flood, first(dialFrom("127.0.0.2")))
	_, _ = dialFrom("127.0.0.4")
	for i, c := range flood[:2] {
		if !closedByServer(c) {
			t.Fatalf("newcomer %d: the oldest connection of the source over its share not closed", i)
		}
	}
	// 127.0.0.2 holds 3, still over: the next newcomer takes another.
	_, _ = dialFrom("127.0.0.4")
	if !closedByServer(flood[2]) {
		t.Fatal("the source still over its share: its oldest not closed")
	}
	_ = other.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := other.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the other source's connection, the oldest of all: %v, want it open while a source is over its share", err)
	}
	// Every source within its share: the oldest of all goes.
	_, _ = dialFrom("127.0.0.5")
	if !closedByServer(other) {
		t.Error("every source within its share: the oldest connection not authenticated not closed")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) != max || l.perSource["127.0.0.2"] != 2 || l.perSource["127.0.0.1"] != 0 || l.perKey["k"] != 3 {
		t.Errorf("%d connections, %d of 127.0.0.2 and %d of 127.0.0.1 not authenticated, %d of key k; want %d, 2, 0, 3",
			len(l.conns), l.perSource["127.0.0.2"], l.perSource["127.0.0.1"], l.perKey["k"], max)
	}
}

func first(c, _ net.Conn) net.Conn { return c }

// listenLimited is a connLimitListener of max on loopback, accepting; dial
// connects and returns both ends once accepted; closedByServer says
// whether the server closed a client's connection.
func listenLimited(t *testing.T, max int) (l *connLimitListener, dial func() (client, server net.Conn),
	closedByServer func(net.Conn) bool) {
	l, dialFrom, closedByServer := listenLimitedFrom(t, max)
	return l, func() (client, server net.Conn) { t.Helper(); return dialFrom("127.0.0.1") }, closedByServer
}

// listenLimitedFrom is listenLimited whose dial connects from a loopback
// address of the caller's (127.0.0.0/8: a source each).
func listenLimitedFrom(t *testing.T, max int) (l *connLimitListener, dialFrom func(ip string) (client, server net.Conn),
	closedByServer func(net.Conn) bool) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = newConnLimitListener(lis, max)
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dialFrom = func(ip string) (client, server net.Conn) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		select {
		case s := <-accepted:
			return c, s
		case <-time.After(20 * time.Second):
			t.Fatal("no connection accepted")
		}
		return nil, nil
	}
	closedByServer = func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	return l, dialFrom, closedByServer
}
