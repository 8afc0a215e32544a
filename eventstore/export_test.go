package eventstore

import (
	"context"
	"errors"
	"io"

	"github.com/jackc/pgx/v5"
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

// ReadBothWays reads a page of ledger's records as Read does, and through
// pgx's Scan of the same rows in text; raw says whether the first read
// took the rows' raw values.
func ReadBothWays(ctx context.Context, s *Store, ledger string, from uint64, limit int) (viaRaw, viaScan []Record, raw bool, err error) {
	rows, err := s.pool.Query(ctx, readSQL, ledger, int64(from), limit)
	if err != nil {
		return nil, nil, false, err
	}
	if viaRaw, raw, err = readRecords(rows, ledger, 16, limit); err != nil {
		return nil, nil, false, err
	}
	rows, err = s.pool.Query(ctx, readSQL, pgx.QueryResultFormats{pgx.TextFormatCode}, ledger, int64(from), limit)
	if err != nil {
		return nil, nil, false, err
	}
	viaScan, scanRaw, err := readRecords(rows, ledger, 16, limit)
	if err == nil && scanRaw {
		err = errors.New("the text read was read raw")
	}
	return viaRaw, viaScan, raw, err
}
