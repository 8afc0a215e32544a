package eventstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// snapshotAt is a snapshot of ledger at recs' position pos, with made-up data.
func snapshotAt(ledger string, recs []eventstore.Record, pos uint64) eventstore.Snapshot {
	return eventstore.Snapshot{Ledger: ledger, Position: pos, Hash: recs[pos-1].Hash, FormatVersion: 1,
		Data: []byte(fmt.Sprintf("state of %s at %d", ledger, pos))}
}

// appended is a ledger named for t with n events appended to s.
func appended(t *testing.T, s *eventstore.Store, n int) (string, []eventstore.Record) {
	t.Helper()
	ledger := testenv.Name(t)
	recs := records(ledger, 0, eventstore.Hash{}, n)
	testenv.NoError(t, s.Append(context.Background(), ledger, 0, eventstore.Hash{}, recs))
	return ledger, recs
}

// TestSnapshotsKeepTheNewest: each save keeps the SnapshotsKept newest;
// LatestSnapshot answers the newest at or below a position, with its data
// and checksum as saved; ledgers do not see each other's.
func TestSnapshotsKeepTheNewest(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, other := testenv.Name(t), testenv.Name(t)+"-other"
	recs := records(ledger, 0, eventstore.Hash{}, 10)
	testenv.NoError(t, s.Append(ctx, ledger, 0, eventstore.Hash{}, recs))
	otherRecs := records(other, 0, eventstore.Hash{}, 1)
	testenv.NoError(t, s.Append(ctx, other, 0, eventstore.Hash{}, otherRecs))
	testenv.NoError(t, s.SaveSnapshot(ctx, snapshotAt(other, otherRecs, 1)))
	for _, pos := range []uint64{2, 4, 6, 8} {
		testenv.NoError(t, s.SaveSnapshot(ctx, snapshotAt(ledger, recs, pos)))
	}
	list, err := s.ListSnapshots(ctx, ledger)
	testenv.NoError(t, err)
	var got []uint64
	for _, snap := range list {
		got = append(got, snap.Position)
	}
	if want := []uint64{8, 6, 4}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshots kept at %v, want %v", got, want)
	}
	for _, tc := range []struct {
		max  uint64
		want uint64 // 0: none
	}{{100, 8}, {8, 8}, {7, 6}, {5, 4}, {3, 0}, {0, 0}, {1<<64 - 1, 8}} {
		snap, ok, err := s.LatestSnapshot(ctx, ledger, tc.max)
		testenv.NoError(t, err)
		if tc.want == 0 {
			if ok {
				t.Errorf("latest at or below %d: %d, want none", tc.max, snap.Position)
			}
			continue
		}
		want := snapshotAt(ledger, recs, tc.want)
		if !ok || snap.Position != tc.want || snap.Hash != want.Hash || !bytes.Equal(snap.Data, want.Data) || snap.FormatVersion != 1 {
			t.Errorf("latest at or below %d: %v at %d (%q), want %d (%q)", tc.max, ok, snap.Position, snap.Data, tc.want, want.Data)
		}
		if snap.Checksum != sha256.Sum256(want.Data) || snap.CreatedAt.IsZero() {
			t.Errorf("snapshot at %d: checksum %x, created at %v", snap.Position, snap.Checksum, snap.CreatedAt)
		}
	}
	if snap, ok, err := s.LatestSnapshot(ctx, other, 100); err != nil || !ok || snap.Position != 1 {
		t.Errorf("the other ledger's snapshot: %v %v %d, want the one at 1", err, ok, snap.Position)
	}
}

// TestSnapshotRefusedWhenTheLogDisagrees: a snapshot at a position the log
// does not hold, or with another hash than the log's there, is not stored.
func TestSnapshotRefusedWhenTheLogDisagrees(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 3)
	wrongHash := snapshotAt(ledger, recs, 2)
	wrongHash.Hash = recs[0].Hash
	beyond := snapshotAt(ledger, recs, 3)
	beyond.Position = 4
	for name, snap := range map[string]eventstore.Snapshot{"another hash": wrongHash, "beyond the head": beyond} {
		if err := s.SaveSnapshot(ctx, snap); !errors.Is(err, eventstore.ErrSnapshotMismatch) {
			t.Errorf("%s: %v, want ErrSnapshotMismatch", name, err)
		}
	}
	empty := snapshotAt(ledger, recs, 1)
	empty.Data = nil
	if err := s.SaveSnapshot(ctx, empty); !errors.Is(err, eventstore.ErrSnapshotTooLarge) {
		t.Errorf("no data: %v, want ErrSnapshotTooLarge", err)
	}
	if list, err := s.ListSnapshots(ctx, ledger); err != nil || len(list) != 0 {
		t.Errorf("snapshots stored: %v %v, want none", list, err)
	}
}

// TestSnapshotSavedTwiceKeepsTheFirst: a second snapshot at a position
// (another writer's, after a restart) leaves the stored one as it was.
func TestSnapshotSavedTwiceKeepsTheFirst(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 2)
	first := snapshotAt(ledger, recs, 2)
	second := first
	second.Data = []byte("the same state, encoded again")
	testenv.NoError(t, s.SaveSnapshot(ctx, first))
	testenv.NoError(t, s.SaveSnapshot(ctx, second))
	snap, _, err := s.LatestSnapshot(ctx, ledger, 2)
	testenv.NoError(t, err)
	if !bytes.Equal(snap.Data, first.Data) {
		t.Errorf("stored %q, want the first %q", snap.Data, first.Data)
	}
}

// TestSnapshotDamageRefused: data changed in the table fails the checksum
// ReadSnapshot checks as it reads, also when read refused the data first
// (a decoder stumbles on damage before the checksum can be known).
func TestSnapshotDamageRefused(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 1)
	snap := snapshotAt(ledger, recs, 1)
	testenv.NoError(t, s.SaveSnapshot(ctx, snap))
	_, err := pool.Exec(ctx, `UPDATE snapshots SET data = set_byte(data, 3, get_byte(data, 3) # 1) WHERE ledger = $1`, ledger)
	testenv.NoError(t, err)
	if _, _, err := s.LatestSnapshot(ctx, ledger, 1); !errors.Is(err, eventstore.ErrSnapshotChecksum) {
		t.Errorf("damaged snapshot: LatestSnapshot %v, want ErrSnapshotChecksum", err)
	}
	refused := errors.New("the data makes no sense")
	_, _, err = s.ReadSnapshot(ctx, ledger, 1, func(_ eventstore.Snapshot, _ int, data io.Reader) error {
		_, err := io.ReadFull(data, make([]byte, 4))
		testenv.NoError(t, err)
		return refused
	})
	if !errors.Is(err, eventstore.ErrSnapshotChecksum) || !errors.Is(err, refused) {
		t.Errorf("damaged snapshot refused by its read: %v, want ErrSnapshotChecksum and the read's error", err)
	}
}

// TestSnapshotFromChecksItsData: a save from a stream stores data that is
// exactly its size and checksum; data shorter, longer or other than they
// say aborts the save and stores nothing (the snapshot before stays the
// newest), and the error says it is the data.
func TestSnapshotFromChecksItsData(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 3)
	testenv.NoError(t, s.SaveSnapshot(ctx, snapshotAt(ledger, recs, 1)))
	good := snapshotAt(ledger, recs, 2)
	data := good.Data
	good.Data, good.Checksum = nil, sha256.Sum256(data)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	for _, c := range []struct {
		name string
		size int
		data []byte
	}{
		{"shorter", len(data), data[:len(data)-1]},
		{"longer", len(data), append(bytes.Clone(data), 'x')},
		{"altered", len(data), flipped},
		{"size too small", len(data) - 1, data},
	} {
		err := s.SaveSnapshotFrom(ctx, good, c.size, iotest.OneByteReader(bytes.NewReader(c.data)))
		if !errors.Is(err, eventstore.ErrSnapshotChecksum) {
			t.Errorf("%s: %v, want ErrSnapshotChecksum", c.name, err)
		}
		if got, _, err := s.LatestSnapshot(ctx, ledger, 3); err != nil || got.Position != 1 {
			t.Fatalf("%s: newest snapshot at %d (%v), want the one at 1 still", c.name, got.Position, err)
		}
	}
	testenv.NoError(t, s.SaveSnapshotFrom(ctx, good, len(data), iotest.HalfReader(bytes.NewReader(data))))
	got, _, err := s.LatestSnapshot(ctx, ledger, 3)
	testenv.NoError(t, err)
	if got.Position != 2 || !bytes.Equal(got.Data, data) || got.Checksum != good.Checksum {
		t.Errorf("stored %q at %d (checksum %x), want %q at 2 (%x)", got.Data, got.Position, got.Checksum, data, good.Checksum)
	}
}

// TestLargeSnapshotStreamed: a snapshot of many chunks, with a last one cut
// short, comes back byte for byte; its save does not copy the data (a bytea
// parameter was copied into pgx's buffer, then into the message), and its
// streamed read never holds it whole (the heap measured live halfway
// through). Not parallel: it measures the process's heap.
func TestLargeSnapshotStreamed(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 1)
	snap := snapshotAt(ledger, recs, 1)
	const size = 16*(4<<20) + 12345 // sixteen chunks and a short one
	snap.Data = make([]byte, size)
	for i := range snap.Data {
		snap.Data[i] = byte(i*7 + i>>13)
	}
	// The collector is off while the save runs, so that what it allocates
	// is all counted.
	var before, after runtime.MemStats
	gc := debug.SetGCPercent(-1)
	runtime.ReadMemStats(&before)
	saveErr := s.SaveSnapshot(ctx, snap)
	runtime.ReadMemStats(&after)
	debug.SetGCPercent(gc)
	testenv.NoError(t, saveErr)
	if saved := after.TotalAlloc - before.TotalAlloc; saved > size/4 {
		t.Errorf("saving %d bytes allocated %d", size, saved)
	}

	// live is the heap in use after a collection: what is held.
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := live()
	var halfway uint64
	h := sha256.New()
	_, found, err := s.ReadSnapshot(ctx, ledger, 1, func(meta eventstore.Snapshot, n int, data io.Reader) error {
		if n != size || meta.Position != 1 || meta.Data != nil {
			t.Errorf("ReadSnapshot gave size %d, position %d, %d bytes of data", n, meta.Position, len(meta.Data))
		}
		if _, err := io.CopyN(h, data, size/2); err != nil {
			return err
		}
		halfway = live()
		_, err := io.Copy(h, data)
		return err
	})
	testenv.NoError(t, err)
	if !found {
		t.Fatal("no snapshot")
	}
	if sum := sha256.Sum256(snap.Data); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Error("streamed data differs from the saved")
	}
	// A few chunks' read buffers at most, not the data.
	if halfway > base+size/4 {
		t.Errorf("streaming %d bytes held %d more halfway through", size, halfway-base)
	}

	// Read whole, after the streamed read: a read of the value in one
	// message leaves pgx's connection a buffer of its size, which a base
	// measured after it would count.
	got, ok, err := s.LatestSnapshot(ctx, ledger, 1)
	testenv.NoError(t, err)
	if !ok || !bytes.Equal(got.Data, snap.Data) {
		t.Fatalf("loaded %d bytes (found %v), saved %d", len(got.Data), ok, size)
	}
}

// TestSnapshotFromSavedAtOnce: two streamed saves of one position, both
// inside their COPY at once (each stream waits for the other's first
// read), both succeed: the second finds the first's row, which is kept, as
// when saved one after the other.
func TestSnapshotFromSavedAtOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 1)
	var inside sync.WaitGroup
	inside.Add(2)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			snap := snapshotAt(ledger, recs, 1)
			data := fmt.Appendf(nil, "encoding %d", i)
			snap.Data, snap.Checksum = nil, sha256.Sum256(data)
			errs <- s.SaveSnapshotFrom(ctx, snap, len(data), &meetingReader{r: bytes.NewReader(data), inside: &inside})
		}()
	}
	for range 2 {
		testenv.NoError(t, <-errs)
	}
	snap, ok, err := s.LatestSnapshot(ctx, ledger, 1)
	testenv.NoError(t, err)
	if !ok || !bytes.HasPrefix(snap.Data, []byte("encoding ")) {
		t.Errorf("stored %q (found %v)", snap.Data, ok)
	}
}

// meetingReader waits, at its first read, until every reader sharing
// inside has come to its first read.
type meetingReader struct {
	r      io.Reader
	inside *sync.WaitGroup
	once   sync.Once
}

func (m *meetingReader) Read(p []byte) (int, error) {
	m.once.Do(func() { m.inside.Done(); m.inside.Wait() })
	return m.r.Read(p)
}

// TestSnapshotSavedAtOnce: two saves of one position at once both succeed
// and one of them is stored.
func TestSnapshotSavedAtOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	ledger, recs := appended(t, s, 1)
	errs := make(chan error, 8)
	for i := range cap(errs) {
		go func() {
			snap := snapshotAt(ledger, recs, 1)
			snap.Data = fmt.Appendf(nil, "encoding %d", i)
			errs <- s.SaveSnapshot(ctx, snap)
		}()
	}
	for range cap(errs) {
		testenv.NoError(t, <-errs)
	}
	snap, ok, err := s.LatestSnapshot(ctx, ledger, 1)
	testenv.NoError(t, err)
	if !ok || !bytes.HasPrefix(snap.Data, []byte("encoding ")) {
		t.Errorf("stored %q (found %v)", snap.Data, ok)
	}
}
