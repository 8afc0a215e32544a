//go:build linux

package daemon

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestConnLimitListenerSameRemoteTwice: a listener on every address
// (ledgerd's service default, ":7070") can hold two connections from one
// remote address, to two of its local addresses. The second must not take
// the first's entry: its count of connections not authenticated would
// outlive both, and the first would be held outside the bound.
func TestConnLimitListenerSameRemoteTwice(t *testing.T) {
	lis, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimitListener(lis, 8)
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	port := lis.Addr().(*net.TCPAddr).Port
	reuse := func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		if err != nil {
			return err
		}
		return serr
	}
	// One client port, two local addresses of the server.
	var local *net.TCPAddr
	var clients []net.Conn
	for _, to := range []string{"127.0.0.1", "127.0.0.2"} {
		d := net.Dialer{Control: reuse, LocalAddr: local}
		if local == nil {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}
		}
		c, err := d.Dial("tcp4", net.JoinHostPort(to, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("dial %s: %v", to, err)
		}
		defer c.Close()
		local = c.LocalAddr().(*net.TCPAddr)
		clients = append(clients, c)
	}
	var servers []net.Conn
	for len(servers) < len(clients) {
		select {
		case s := <-accepted:
			servers = append(servers, s)
			continue
		case <-time.After(2 * time.Second):
		}
		break
	}
	if len(servers) == 2 && servers[0].RemoteAddr().String() != servers[1].RemoteAddr().String() {
		t.Skipf("remote addresses %s and %s differ", servers[0].RemoteAddr(), servers[1].RemoteAddr())
	}
	l.mu.Lock()
	held := len(l.conns)
	l.mu.Unlock()
	if held != len(servers) {
		t.Errorf("%d connections held, %d open: an open connection outside the bound", held, len(servers))
	}
	for _, s := range servers {
		_ = s.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) != 0 || len(l.perSource) != 0 {
		t.Errorf("all closed: %d connections held, not authenticated by source %v; want none", len(l.conns), l.perSource)
	}
}
