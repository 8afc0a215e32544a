package eventstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Limits of snapshots.
const (
	// SnapshotsKept is how many snapshots a ledger keeps: the newest, and
	// older ones to fall back on should it not load.
	SnapshotsKept = 3
	// SnapshotBytesMax bounds one snapshot: PostgreSQL's bytea holds at most
	// 1 GB, and the whole value is sent and received in one message. About
	// 12 bytes a transfer and 100 an account: some 80 million transfers.
	SnapshotBytesMax = 1<<30 - 1<<20
)

var (
	// ErrSnapshotTooLarge means a snapshot is over SnapshotBytesMax.
	ErrSnapshotTooLarge = errors.New("snapshot too large")
	// ErrSnapshotMismatch means a snapshot's position is not in the log, or
	// its hash is not the log's there: it is the state of another history.
	ErrSnapshotMismatch = errors.New("snapshot does not match the log")
	// ErrSnapshotChecksum means a snapshot's data is not what was stored.
	ErrSnapshotChecksum = errors.New("snapshot checksum mismatch")
)

// Snapshot is a ledger's state at a position, encoded by its writer. Unlike
// events, snapshots are replaced: a ledger keeps its SnapshotsKept newest.
type Snapshot struct {
	Ledger string
	// Position is the last event folded into the state.
	Position uint64
	// Hash is the chain hash of the event at Position.
	Hash Hash
	// FormatVersion is the encoding's version (domain.SnapshotFormatVersion).
	FormatVersion int
	// Checksum is the SHA-256 of Data, set by SaveSnapshot.
	Checksum Hash
	Data     []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// Verify reports whether the data is what was stored.
//
// Errors: ErrSnapshotChecksum.
func (snap *Snapshot) Verify() error {
	if sha256.Sum256(snap.Data) != snap.Checksum {
		return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, ErrSnapshotChecksum)
	}
	return nil
}

// SaveSnapshot stores snap, with its checksum, and deletes the ledger's
// snapshots older than the SnapshotsKept newest, in one transaction. It
// refuses a snapshot that the log contradicts; one already stored at that
// position is kept.
//
// Errors: ErrSnapshotTooLarge; ErrSnapshotMismatch; the database error.
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	if len(snap.Data) == 0 || len(snap.Data) > SnapshotBytesMax {
		return fmt.Errorf("snapshot of %s at %d: %d bytes (1..%d): %w", snap.Ledger, snap.Position, len(snap.Data),
			SnapshotBytesMax, ErrSnapshotTooLarge)
	}
	sum := sha256.Sum256(snap.Data)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var logged []byte
		err := tx.QueryRow(ctx, `SELECT hash FROM events WHERE ledger = $1 AND position = $2`,
			snap.Ledger, int64(snap.Position)).Scan(&logged)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && string(logged) != string(snap.Hash[:])) {
			return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, ErrSnapshotMismatch)
		}
		if err != nil {
			return fmt.Errorf("snapshot of %s at %d: read the log: %w", snap.Ledger, snap.Position, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO snapshots (ledger, position, hash, format_version, checksum, data)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ledger, position) DO NOTHING`,
			snap.Ledger, int64(snap.Position), snap.Hash[:], snap.FormatVersion, sum[:], snap.Data); err != nil {
			return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM snapshots WHERE ledger = $1 AND position <
			(SELECT position FROM snapshots WHERE ledger = $1 ORDER BY position DESC OFFSET $2 LIMIT 1)`,
			snap.Ledger, SnapshotsKept-1); err != nil {
			return fmt.Errorf("snapshot of %s at %d: delete older ones: %w", snap.Ledger, snap.Position, err)
		}
		return nil
	})
}

// LatestSnapshot returns the ledger's newest snapshot at or before
// maxPosition, and false when there is none. The caller checks it (Verify,
// then its decoding and the log) and, if it fails, asks again below its
// position.
//
// Errors: the database error.
func (s *Store) LatestSnapshot(ctx context.Context, ledger string, maxPosition uint64) (Snapshot, bool, error) {
	snap := Snapshot{Ledger: ledger}
	var (
		pos            int64
		hash, checksum []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT position, hash, format_version, checksum, data, created_at FROM snapshots
		WHERE ledger = $1 AND position <= $2 ORDER BY position DESC LIMIT 1`, ledger, int64(min(maxPosition, 1<<63-1))).
		Scan(&pos, &hash, &snap.FormatVersion, &checksum, &snap.Data, &snap.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("latest snapshot of %s: %w", ledger, err)
	}
	snap.Position = uint64(pos)
	copy(snap.Hash[:], hash)
	copy(snap.Checksum[:], checksum)
	return snap, true, nil
}

// ListSnapshots returns the ledger's snapshots (at most 4 × SnapshotsKept),
// newest first, without their data.
//
// Errors: the database error.
func (s *Store) ListSnapshots(ctx context.Context, ledger string) ([]Snapshot, error) {
	rows, err := s.pool.Query(ctx, `SELECT position, hash, format_version, checksum, created_at
		FROM snapshots WHERE ledger = $1 ORDER BY position DESC LIMIT $2`, ledger, SnapshotsKept*4)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", ledger, err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		snap := Snapshot{Ledger: ledger}
		var (
			pos            int64
			hash, checksum []byte
		)
		if err := rows.Scan(&pos, &hash, &snap.FormatVersion, &checksum, &snap.CreatedAt); err != nil {
			return nil, fmt.Errorf("list snapshots of %s: %w", ledger, err)
		}
		snap.Position = uint64(pos)
		copy(snap.Hash[:], hash)
		copy(snap.Checksum[:], checksum)
		out = append(out, snap)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", ledger, err)
	}
	return out, nil
}
