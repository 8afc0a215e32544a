package daemon

import "context"

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

// LedgersWithUnraisedAlerts are the ledgers the alerts sweep would start a
// writer for, but for where writers run.
func LedgersWithUnraisedAlerts(ctx context.Context, m *Main) ([]string, error) {
	left, err := m.ledgersWithUnraisedAlerts(ctx)
	out := make([]string, len(left))
	for i, l := range left {
		out[i] = l.ledger
	}
	return out, err
}
