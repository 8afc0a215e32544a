package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// SnapshotStore is what a writer needs to keep snapshots of its state. A
// writer takes and loads snapshots when Options.SnapshotEvery is set and its
// Store is one (eventstore.Store is).
type SnapshotStore interface {
	// SaveSnapshotFrom stores a snapshot of size bytes read from data;
	// snap.Checksum is their SHA-256 (eventstore.Store.SaveSnapshotFrom).
	SaveSnapshotFrom(ctx context.Context, snap eventstore.Snapshot, size int, data io.Reader) error
	ReadSnapshot(ctx context.Context, ledger string, maxPosition uint64,
		read func(meta eventstore.Snapshot, size int, data io.Reader) error) (eventstore.Snapshot, bool, error)
}

const (
	// snapshotTriesMax bounds the snapshots a load tries, newest first,
	// before it folds the whole log: as many as the store keeps.
	snapshotTriesMax = eventstore.SnapshotsKept
	// snapshotSaveTimeout bounds one snapshot's write.
	snapshotSaveTimeout = 5 * time.Minute
	// snapshotDrainMax bounds how long a stopping writer waits for the
	// snapshot being written: long enough for the usual one to land, rather
	// than throw the work away.
	snapshotDrainMax = 10 * time.Second
)

// errBadSnapshot marks a snapshot that must be ignored, as opposed to a
// failure to read one.
var errBadSnapshot = errors.New("bad snapshot")

// snapshotter takes a writer's snapshots: the writer's goroutine encodes the
// state between batches; the committer, once the batch before it has
// committed, hands it to a goroutine of its own to write. At most one is
// being written at a time: a snapshot due meanwhile waits for the next batch.
type snapshotter struct {
	store  SnapshotStore // nil: no snapshots
	every  uint64
	ledger string
	logger *slog.Logger

	// last is the position of the snapshot loaded or taken last; the
	// writer's goroutine only.
	last uint64
	// sizeHint is the last snapshot's size, to encode the next without
	// growing the buffer as it goes when it must be held in memory; the
	// writer's goroutine only.
	sizeHint int
	// spoolDir is where snapshots are spooled ("": os.TempDir).
	spoolDir string
	// spools counts the spools taken and not yet closed: every path a
	// snapshot takes closes its own (tests check it).
	spools atomic.Int32
	// failSpools makes every spool's writes fail, as a full disk would
	// (Options.failSpools, for tests).
	failSpools bool
	// busy is set from taking a snapshot until its write has ended.
	busy atomic.Bool
	// ctx is the writer's (set by Run): once it ends, the write in flight
	// has snapshotDrainMax more.
	ctx    context.Context
	writes sync.WaitGroup
}

// pendingSnapshot is a snapshot taken and not yet written.
type pendingSnapshot struct {
	position uint64
	hash     eventstore.Hash
	data     *spool
	took     time.Duration
}

func newSnapshotter(opts *Options) *snapshotter {
	s := &snapshotter{ledger: opts.Ledger, logger: opts.Logger, ctx: context.Background(), spoolDir: opts.SnapshotSpoolDir,
		failSpools: opts.failSpools}
	if store, ok := opts.Store.(SnapshotStore); ok && opts.SnapshotEvery > 0 {
		s.store, s.every = store, uint64(opts.SnapshotEvery)
	}
	return s
}

// take encodes the state when a snapshot is due and none is being written; it
// returns nil otherwise. The state is the writer's: take runs on its
// goroutine, between batches. A snapshot whose spool fails (a full disk) is
// dropped, and the next is due as if it had been taken.
func (s *snapshotter) take(st *ledgerState) *pendingSnapshot {
	if s.store == nil || st.head < s.last+s.every || s.busy.Load() {
		return nil
	}
	began := time.Now()
	sp, fileErr := newSpool(s.spoolDir, s.sizeHint+s.sizeHint/8)
	s.spools.Add(1)
	if fileErr != nil {
		s.logger.Warn("snapshot spooled in memory: no temporary file", "position", st.head, "err", fileErr)
	}
	if s.failSpools {
		sp.err = errors.New("snapshot spool: writes fail (test)")
	}
	err := st.domain.MarshalSnapshot(sp)
	s.last = st.head
	switch {
	case sp.err != nil:
		s.logger.Warn("snapshot not taken", "position", st.head, "err", sp.err)
		s.drop(sp)
		return nil
	case err != nil:
		// Only a state in the middle of an atomic batch refuses: a bug.
		panic(fmt.Sprintf("commands: snapshot of %s at %d: %v", s.ledger, st.head, err))
	}
	s.sizeHint = sp.Len()
	s.busy.Store(true)
	return &pendingSnapshot{position: st.head, hash: st.hash, data: sp, took: time.Since(began)}
}

// committed writes p in the background, now that the batch it follows has
// committed, or drops it when that batch failed (broken).
func (s *snapshotter) committed(p *pendingSnapshot, broken error) {
	if broken != nil {
		// It holds the failed batch, which the log does not.
		s.logger.Info("snapshot dropped: its batch failed", "position", p.position)
		s.drop(p.data)
		s.busy.Store(false)
		return
	}
	s.writes.Add(1)
	go func() {
		defer s.writes.Done()
		defer s.busy.Store(false)
		defer s.drop(p.data)
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), snapshotSaveTimeout)
		defer cancel()
		defer context.AfterFunc(s.ctx, func() { time.AfterFunc(snapshotDrainMax, cancel) })()
		data, err := p.data.Reader()
		if err == nil {
			err = s.store.SaveSnapshotFrom(ctx, eventstore.Snapshot{Ledger: s.ledger, Position: p.position, Hash: p.hash,
				FormatVersion: domain.SnapshotFormatVersion, Checksum: p.data.Checksum()}, p.data.Len(), data)
		}
		if err != nil {
			s.logger.Warn("snapshot not saved", "position", p.position, "bytes", p.data.Len(), "err", err)
			return
		}
		s.logger.Info("snapshot saved", "position", p.position, "bytes", p.data.Len(), "spooled", spooledIn(p.data),
			"encode_ms", p.took.Milliseconds(), "write_ms", time.Since(began).Milliseconds())
	}()
}

// drop closes a spool taken: its file's space, or its buffer, goes.
func (s *snapshotter) drop(sp *spool) {
	_ = sp.Close()
	s.spools.Add(-1)
}

// spooledIn names where a snapshot was held until written, for the log.
func spooledIn(sp *spool) string {
	if sp.inFile() {
		return "file"
	}
	return "memory"
}

// loadSnapshot returns the state to fold the log's tail into: the newest
// snapshot at or below head that passes every check (checksum, decoding, its
// hash against the log's), or an empty state. A snapshot that fails is
// logged and the next older one tried, up to snapshotTriesMax. The state is
// decoded as the data streams in: the data is never held whole.
//
// Errors: a failure to read the store.
func (w *Writer) loadSnapshot(ctx context.Context, head uint64) (*ledgerState, error) {
	s := w.snap
	below := head
	for range snapshotTriesMax {
		if s.store == nil || below == 0 {
			break
		}
		var st *ledgerState
		snap, found, err := s.store.ReadSnapshot(ctx, w.opts.Ledger, below, func(meta eventstore.Snapshot, size int, data io.Reader) error {
			var err error
			st, err = w.fromSnapshot(ctx, &meta, &sizedReader{r: data, left: size})
			return err
		})
		if err == nil && !found {
			break
		}
		if err == nil {
			s.last = snap.Position
			return st, nil
		}
		// Only a snapshot found and refused is passed over: a failure to
		// read the store is not a reason to fold the whole log.
		if !found || !errors.Is(err, errBadSnapshot) && !errors.Is(err, eventstore.ErrSnapshotChecksum) &&
			!errors.Is(err, eventstore.ErrSnapshotTooLarge) {
			return nil, err
		}
		if snap.Position == 0 || snap.Position > below {
			return nil, fmt.Errorf("snapshot store answered position %d for at most %d: %w", snap.Position, below, err)
		}
		w.opts.Logger.Warn("snapshot ignored: falling back to an older one or the log", "position", snap.Position, "err", err)
		below = snap.Position - 1
	}
	s.last = 0
	d := domain.NewState()
	d.SetPolicy(w.opts.Policy)
	return &ledgerState{domain: d, recent: newRecentTransfers(w.opts.recentMax)}, nil
}

// fromSnapshot checks snap (its data not yet read) against the log and
// decodes its data. ReadSnapshot checks the data's checksum after.
//
// Errors: errBadSnapshot (wrapping why) for a snapshot to ignore; a failure
// to read the log.
func (w *Writer) fromSnapshot(ctx context.Context, snap *eventstore.Snapshot, data io.Reader) (*ledgerState, error) {
	if snap.FormatVersion < domain.SnapshotFormatVersionMin || snap.FormatVersion > domain.SnapshotFormatVersion {
		return nil, fmt.Errorf("%w: format %d, this build reads %d..%d", errBadSnapshot, snap.FormatVersion,
			domain.SnapshotFormatVersionMin, domain.SnapshotFormatVersion)
	}
	recs, err := w.opts.Store.ReadPositions(ctx, w.opts.Ledger, []uint64{snap.Position})
	if err != nil {
		return nil, fmt.Errorf("read the event of the snapshot at %d: %w", snap.Position, err)
	}
	if len(recs) != 1 || recs[0].Hash != snap.Hash {
		return nil, fmt.Errorf("%w: its hash at %d is not the log's", errBadSnapshot, snap.Position)
	}
	d, err := domain.UnmarshalSnapshot(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
	}
	if d.Position() != snap.Position {
		return nil, fmt.Errorf("%w: the state is at %d, the snapshot says %d", errBadSnapshot, d.Position(), snap.Position)
	}
	d.SetPolicy(w.opts.Policy)
	// Recorded times never go back, so the last event's is the latest.
	return &ledgerState{domain: d, head: snap.Position, hash: snap.Hash, recordedAt: recs[0].RecordedAt,
		recent: newRecentTransfers(w.opts.recentMax)}, nil
}

// sizedReader tells how much of a stream of known size is left, as
// bytes.Reader does: the decoder sizes its id index from it.
type sizedReader struct {
	r    io.Reader
	left int
}

func (s *sizedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.left -= n
	return n, err
}

func (s *sizedReader) Len() int { return max(s.left, 0) }
