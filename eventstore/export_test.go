package eventstore

import (
	"context"
	"io"
)

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

// LatestSnapshot is ReadSnapshot read whole: the ledger's newest snapshot at
// or before maxPosition, with its data checked, and false when there is none.
func (s *Store) LatestSnapshot(ctx context.Context, ledger string, maxPosition uint64) (Snapshot, bool, error) {
	var data []byte
	snap, found, err := s.ReadSnapshot(ctx, ledger, maxPosition, func(_ Snapshot, size int, r io.Reader) error {
		data = make([]byte, size)
		_, err := io.ReadFull(r, data)
		return err
	})
	if err != nil || !found {
		return Snapshot{}, false, err
	}
	snap.Data = data
	return snap, true, nil
}
