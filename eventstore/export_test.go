package eventstore

// SetBeforeCopy makes every append of s call fn after the head moved and
// before the COPY: a test freezes a writer in the middle of its transaction.
func SetBeforeCopy(s *Store, fn func()) { s.beforeCopy = fn }

// SetLeaseBeforeCopy is SetBeforeCopy for the appends of l's leases.
func SetLeaseBeforeCopy(l *Lease, fn func()) { l.beforeCopy = fn }
