package daemon

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestConnLimitListener: at its bound the listener replaces the oldest
// connection that never authenticated; when all did, it closes the
// newcomer.
func TestConnLimitListener(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const max = 3
	l := newConnLimitListener(lis, max)
	defer l.Close()
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
	// dial connects and waits until the server side is accepted.
	dial := func() (client, server net.Conn) {
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
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	c1, s1 := dial()
	c2, _ := dial()
	_, s3 := dial()
	l.authenticated(s1.RemoteAddr().String())
	l.authenticated(s3.RemoteAddr().String())
	_, s4 := dial() // the bound: replaces c2, the oldest not authenticated
	if !closedByServer(c2) {
		t.Error("the oldest connection not authenticated: not closed at the bound")
	}
	if n := held(l); n != max {
		t.Errorf("%d connections held, want %d", n, max)
	}
	l.authenticated(s4.RemoteAddr().String())
	// All authenticated: a newcomer is closed.
	c5, err := net.Dial("tcp", lis.Addr().String())
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
