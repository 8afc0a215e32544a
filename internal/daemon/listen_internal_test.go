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
	n := l.perKey["k1"]
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("key k1 counts %d connections after its refusal, want 0", n)
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

// listenLimited is a connLimitListener of max on loopback, accepting; dial
// connects and returns both ends once accepted; closedByServer says
// whether the server closed a client's connection.
func listenLimited(t *testing.T, max int) (l *connLimitListener, dial func() (client, server net.Conn),
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
	dial = func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", lis.Addr().String())
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
	return l, dial, closedByServer
}
