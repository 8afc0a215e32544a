package eventstore

// SetBeforeCommit makes every append of s call fn after the head moved and
// before the COMMIT: a test freezes a writer in the middle of its transaction.
func SetBeforeCommit(s *Store, fn func()) { s.beforeCommit = fn }

// SetLeaseBeforeCommit is SetBeforeCommit for the appends of l's leases.
func SetLeaseBeforeCommit(l *Lease, fn func()) { l.beforeCommit = fn }

// Held is how many projector leases l holds.
func (l *Locks) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}
