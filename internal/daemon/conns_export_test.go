package daemon

// GRPCConns are the connections the gRPC listener holds: the key
// each counts for, by remote address ("" when it never authenticated, or
// lost it).
func GRPCConns(m *Main) map[string]string {
	l := m.grpcLis.(*connLimitListener)
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for remote, c := range l.conns {
		out[remote] = c.key
	}
	return out
}
