package eventstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/pgbin"
)

// Limits of snapshots.
const (
	// SnapshotsKept is how many snapshots a ledger keeps: the newest, and
	// older ones to fall back on should it not load.
	SnapshotsKept = 3
	// SnapshotBytesMax bounds one snapshot: PostgreSQL's bytea holds at most
	// 1 GB. About 7 bytes a transfer id (format 5) and 27 an account without
	// metadata: well over 100 million transfers.
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
	// Checksum is the SHA-256 of Data, set by SaveSnapshot (the caller
	// sets it for SaveSnapshotFrom).
	Checksum Hash
	Data     []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// snapshotChunk is how much of a snapshot's data one message carries when it
// is read: a snapshot of millions of transfers is hundreds of MB, and a
// whole value in one message costs pgx a copy or two of it (BENCHMARKS.md,
// "Scale"). A little under 4 MiB, so that a message with its header fits
// pgx's pooled 4 MiB read buffer, not an 8 MiB one. (A save streams the
// value through a COPY, in pgx's own pieces.)
const snapshotChunk = 4<<20 - 4<<10

// SaveSnapshot stores snap, with its checksum, and deletes the ledger's
// snapshots older than the SnapshotsKept newest, in one transaction. It
// refuses a snapshot that the log contradicts; one already stored at that
// position is kept. The data is streamed (a binary COPY read from it), not
// copied into one message.
//
// Errors: ErrSnapshotTooLarge; ErrSnapshotMismatch; the database error.
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	snap.Checksum = sha256.Sum256(snap.Data)
	data := snap.Data
	snap.Data = nil
	return s.SaveSnapshotFrom(ctx, snap, len(data), bytes.NewReader(data))
}

// SaveSnapshotFrom is SaveSnapshot for data read from a stream (a writer
// spools a big state to a file rather than hold it in memory twice):
// snap.Data is ignored, size is the data's length and snap.Checksum its
// SHA-256, both as the encoder computed them. Both are checked as the data
// is sent: data shorter, longer or other than that aborts the COPY, so a
// snapshot stored always matches its checksum.
//
// Errors: ErrSnapshotTooLarge; ErrSnapshotMismatch; ErrSnapshotChecksum
// (the data is not what size and checksum say); data's error; the
// database error.
func (s *Store) SaveSnapshotFrom(ctx context.Context, snap Snapshot, size int, data io.Reader) error {
	if size <= 0 || size > SnapshotBytesMax {
		return fmt.Errorf("snapshot of %s at %d: %d bytes (1..%d): %w", snap.Ledger, snap.Position, size,
			SnapshotBytesMax, ErrSnapshotTooLarge)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var logged []byte
		err := tx.QueryRow(ctx, `SELECT hash FROM events WHERE ledger = $1 AND position = $2`,
			snap.Ledger, int64(snap.Position)).Scan(&logged)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && string(logged) != string(snap.Hash[:])) {
			return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, ErrSnapshotMismatch)
		}
		if err != nil {
			return fmt.Errorf("snapshot of %s at %d: read the log: %w", snap.Ledger, snap.Position, err)
		}
		var stored bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM snapshots WHERE ledger = $1 AND position = $2)`,
			snap.Ledger, int64(snap.Position)).Scan(&stored); err != nil {
			return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, err)
		}
		if !stored {
			body := &checkedReader{r: data, left: int64(size), want: snap.Checksum, sum: sha256.New()}
			if _, err := tx.Conn().PgConn().CopyFrom(ctx, snapshotRow(&snap, size, body), `COPY snapshots
				(ledger, position, hash, format_version, checksum, data) FROM STDIN (FORMAT binary)`); err != nil {
				if body.err != nil && body.err != io.EOF {
					err = body.err // the data was refused, not the row
				}
				return fmt.Errorf("snapshot of %s at %d: %w", snap.Ledger, snap.Position, err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM snapshots WHERE ledger = $1 AND position <
			(SELECT position FROM snapshots WHERE ledger = $1 ORDER BY position DESC OFFSET $2 LIMIT 1)`,
			snap.Ledger, SnapshotsKept-1); err != nil {
			return fmt.Errorf("snapshot of %s at %d: delete older ones: %w", snap.Ledger, snap.Position, err)
		}
		return nil
	})
	// Another save stored the same position meanwhile (a writer's lease
	// fences a second writer, but not a tool): it is kept, as when it was
	// stored before.
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return nil
	}
	return err
}

// snapshotRow is snap as the one row of a binary COPY into snapshots: its
// size bytes of data are read from data as the COPY sends them.
func snapshotRow(snap *Snapshot, size int, data io.Reader) io.Reader {
	head := append([]byte(nil), pgbin.CopyHeader...)
	head = pgbin.RowStart(head, 6)
	head = pgbin.Text(head, snap.Ledger)
	head = pgbin.Int8(head, int64(snap.Position))
	head = pgbin.Bytes(head, snap.Hash[:])
	head = pgbin.Int4(head, int32(snap.FormatVersion))
	head = pgbin.Bytes(head, snap.Checksum[:])
	head = binary.BigEndian.AppendUint32(head, uint32(size))
	return io.MultiReader(bytes.NewReader(head), data, strings.NewReader(pgbin.CopyTrailer))
}

// checkedReader reads exactly left bytes from r and fails, instead of
// ending, when they are fewer or more, or when their SHA-256 is not want:
// the COPY reading it is then aborted, not committed.
type checkedReader struct {
	r    io.Reader
	left int64
	want Hash
	sum  hash.Hash
	err  error
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		// One byte more must not be there.
		var extra [1]byte
		if n, _ := io.ReadFull(c.r, extra[:]); n > 0 {
			c.err = fmt.Errorf("data longer than its size: %w", ErrSnapshotChecksum)
		} else if !bytes.Equal(c.sum.Sum(nil), c.want[:]) {
			c.err = fmt.Errorf("data not what its checksum says: %w", ErrSnapshotChecksum)
		} else {
			c.err = io.EOF
		}
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.sum.Write(p[:n])
	c.left -= int64(n)
	if err == io.EOF && c.left > 0 {
		err = fmt.Errorf("data %d bytes shorter than its size: %w", c.left, ErrSnapshotChecksum)
	}
	if err != nil && err != io.EOF {
		c.err = err
		return n, err
	}
	return n, nil
}

// ReadSnapshot finds the ledger's newest snapshot at or before maxPosition
// and hands read its metadata (Data nil), its size and its data as a
// stream (the writer decodes its state from it: the data is never held
// whole). It returns the metadata, and false when there is none. The data
// is read in chunks of snapshotChunk from one statement (a save deleting the
// snapshot meanwhile does not cut it short), sent when read first reads: no
// connection is held before that, so read may use the pool for its checks
// before its first Read (not after: a pool of one would wait on itself).
// After read returns, the data read (and what read left, drained) is
// checked against the stored checksum: when that fails, whatever read made
// of the data must be thrown away. When read fails, the data is checked
// too: a read that stumbled on data other than its checksum's returns
// ErrSnapshotChecksum as well as read's error.
//
// Errors (with found true, the metadata is returned too): read's;
// ErrSnapshotChecksum (data not what was stored, or not its length);
// ErrSnapshotTooLarge; the database error.
func (s *Store) ReadSnapshot(ctx context.Context, ledger string, maxPosition uint64,
	read func(meta Snapshot, size int, data io.Reader) error) (Snapshot, bool, error) {
	snap := Snapshot{Ledger: ledger}
	var (
		pos, size      int64
		hash, checksum []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT position, hash, format_version, checksum, created_at, octet_length(data)
		FROM snapshots WHERE ledger = $1 AND position <= $2 ORDER BY position DESC LIMIT 1`,
		ledger, int64(min(maxPosition, 1<<63-1))).
		Scan(&pos, &hash, &snap.FormatVersion, &checksum, &snap.CreatedAt, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("latest snapshot of %s: %w", ledger, err)
	}
	snap.Position = uint64(pos)
	copy(snap.Hash[:], hash)
	copy(snap.Checksum[:], checksum)
	if size > SnapshotBytesMax {
		return snap, true, fmt.Errorf("snapshot of %s at %d: %d bytes: %w", ledger, pos, size, ErrSnapshotTooLarge)
	}
	data := &chunkReader{ctx: ctx, pool: s.pool, ledger: ledger, position: pos, left: size}
	defer data.close()
	sum := sha256.New()
	if err := read(snap, int(size), io.TeeReader(data, sum)); err != nil {
		if data.err != nil && data.err != io.EOF {
			err = data.err // the read failed, not what read made of it
		} else if _, cerr := io.Copy(sum, data); cerr == nil && (data.read != size || !bytes.Equal(sum.Sum(nil), snap.Checksum[:])) {
			// Data other than its checksum's is why read refused it, which
			// read could not tell before the end.
			err = fmt.Errorf("%w, so: %w", ErrSnapshotChecksum, err)
		}
		return snap, true, fmt.Errorf("snapshot of %s at %d: %w", ledger, pos, err)
	}
	// What read left unread counts too.
	if _, err := io.Copy(sum, data); err != nil {
		return snap, true, fmt.Errorf("snapshot of %s at %d: %w", ledger, pos, err)
	}
	switch {
	case data.read != size:
		// Deleted between the two statements, or altered.
		return snap, true, fmt.Errorf("snapshot of %s at %d: %d of its %d bytes: %w", ledger, pos, data.read, size,
			ErrSnapshotChecksum)
	case !bytes.Equal(sum.Sum(nil), snap.Checksum[:]):
		return snap, true, fmt.Errorf("snapshot of %s at %d: %w", ledger, pos, ErrSnapshotChecksum)
	}
	return snap, true, nil
}

// chunkReader reads a snapshot's data from its rows of chunks, querying them
// at its first Read.
type chunkReader struct {
	ctx      context.Context
	pool     *pgxpool.Pool
	ledger   string
	position int64
	rows     pgx.Rows // nil until the first Read
	// cur is what is left of the current chunk: pgx's buffer, valid until
	// the next row.
	cur        []byte
	left, read int64
	err        error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.rows == nil {
			c.rows, c.err = c.pool.Query(c.ctx, `SELECT substring(s.data FROM g FOR $3) FROM snapshots s,
				generate_series(1, octet_length(s.data), $3) g WHERE s.ledger = $1 AND s.position = $2 ORDER BY g`,
				c.ledger, c.position, snapshotChunk)
			if c.err != nil {
				return 0, c.err
			}
		}
		if !c.rows.Next() {
			c.err = c.rows.Err()
			if c.err == nil {
				c.err = io.EOF
			}
			return 0, c.err
		}
		c.cur, c.err = c.chunk()
		if c.err == nil && int64(len(c.cur)) > c.left {
			c.err = fmt.Errorf("more data than its length: %w", ErrSnapshotChecksum)
		}
		if c.err != nil {
			return 0, c.err
		}
		c.left -= int64(len(c.cur))
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	c.read += int64(n)
	return n, nil
}

// chunk is the current row's chunk: its bytes as they came, in binary (a
// connection made to use the simple protocol sends hex text, scanned).
func (c *chunkReader) chunk() ([]byte, error) {
	if c.rows.FieldDescriptions()[0].Format == pgx.BinaryFormatCode {
		return c.rows.RawValues()[0], nil
	}
	var b []byte
	err := c.rows.Scan(&b)
	return b, err
}

func (c *chunkReader) close() {
	if c.rows != nil {
		c.rows.Close()
	}
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
