package domain_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ledgerd/ledger/domain"
)

const (
	// snapshotWorkloadCommands is how many commands the holds workload runs
	// before the state is snapshotted.
	snapshotWorkloadCommands = 4_000
	// snapshotLockstepSteps is how many commands both states then decide.
	snapshotLockstepSteps = 3_000
)

// stateEqual compares two states field by field, unexported ones included,
// but for the expiry heap (rebuilt on load, without the entries of holds since
// resolved), the undo journal (empty between batches) and the accounts the
// last event moved (scratch).
var stateEqual = cmp.Options{
	cmp.Exporter(func(t reflect.Type) bool { return t.PkgPath() == "github.com/ledgerd/ledger/domain" }),
	cmpopts.IgnoreFields(domain.State{}, "expiries", "journal", "moved"),
}

// newHoldsWorkload is the holds property workload (property_holds_test.go)
// on a fresh state.
func newHoldsWorkload(t *testing.T, seed uint64) *holdsWorkload {
	return &holdsWorkload{
		t:     t,
		r:     rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		s:     domain.NewState(),
		clock: now,
		m: &holdsModel{
			assets: map[string]uint8{}, byAsset: map[string][]string{}, taken: map[string]takenID{},
			resolutions: map[string]int{}, resolvedBy: map[string]string{},
			reversible: map[string][]domain.Posting{}, reversed: map[string][]domain.Units{},
		},
		outcomes: map[string]int{},
	}
}

func marshalSnapshot(t testing.TB, s *domain.State) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.MarshalSnapshot(&b); err != nil {
		t.Fatalf("MarshalSnapshot: %v", err)
	}
	return b.Bytes()
}

func unmarshalSnapshot(t testing.TB, b []byte) *domain.State {
	t.Helper()
	s, err := domain.UnmarshalSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("UnmarshalSnapshot: %v", err)
	}
	return s
}

// TestSnapshotRoundTrip: a state after a random workload of every command
// (holds with expiries, posts, voids, reversals, closes, bounds, metadata,
// atomic groups) comes back from its snapshot equal in every field, answers
// every id the same, and then decides the same commands identically.
func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	seed := propertySeed(t)
	w := newHoldsWorkload(t, seed)
	for w.step = 0; w.commands < snapshotWorkloadCommands; w.step++ {
		w.randomStep()
		if t.Failed() {
			t.Fatalf("workload failed at step %d (seed %#x)", w.step, seed)
		}
	}
	collide(t, w)
	data := marshalSnapshot(t, w.s)
	got := unmarshalSnapshot(t, data)
	t.Logf("seed %#x: %d events, %d accounts, %d open holds, %d ids: %d bytes", seed, w.s.Position(),
		w.s.AccountCount(), w.s.HoldCount(), w.s.TransferCount(), len(data))
	if w.s.HoldCount() == 0 || len(w.m.revOrder) == 0 {
		t.Fatalf("the workload left %d open holds and %d reversible ids: it tests less than it claims", w.s.HoldCount(), len(w.m.revOrder))
	}
	if diff := cmp.Diff(w.s, got, stateEqual); diff != "" {
		t.Fatalf("state from the snapshot differs (-original +loaded):\n%s", diff)
	}
	if again := marshalSnapshot(t, got); len(again) != len(data) {
		t.Errorf("the loaded state's snapshot has %d bytes, the original's %d", len(again), len(data))
	}
	for _, id := range append(w.m.takenOrder, "never-taken", "t0", w.fresh("t")) {
		wantPos, wantOK := w.s.TransferCandidate(id)
		if pos, ok := got.TransferCandidate(id); pos != wantPos || ok != wantOK {
			t.Errorf("TransferCandidate(%s) = %d %v, want %d %v", id, pos, ok, wantPos, wantOK)
		}
	}
	checkLockstep(t, w, got)
}

// collide applies a new transfer whose id's hash is forced onto an older
// transfer's, so that the state has an id in its collided map.
func collide(t *testing.T, w *holdsWorkload) {
	t.Helper()
	for range 100 {
		_, c, _ := w.genTransfer(false)
		ct, ok := c.(*domain.CreateTransfer)
		if !ok || ct.Validate() != nil {
			continue
		}
		domain.CollideTransferID(w.s, ct.ID, w.m.taken[w.m.takenOrder[0]].pos)
		e, err := decideAt(w.s, c, w.clock)
		if err != nil {
			continue // refused (a bound, a closed account): its forced hash stays, harmless
		}
		pos := w.s.Position() + 1
		w.s.Evolve(pos, e)
		remember(w.s, pos, e)
		w.accept(c, e, pos)
		if pos, ok := w.s.TransferCandidate(ct.ID); !ok || pos != w.s.Position() {
			t.Fatalf("collided id %s: candidate %d %v, want %d", ct.ID, pos, ok, w.s.Position())
		}
		return
	}
	t.Fatal("no transfer accepted in 100 tries")
}

// checkLockstep goes on with the workload's commands, deciding each against
// both the workload's state and other, and expiring due holds in the order
// each state gives them: every answer must be the same.
func checkLockstep(t *testing.T, w *holdsWorkload, other *domain.State) {
	t.Helper()
	decided.Lock()
	for pos, e := range decided.m[w.s] { // the log, for NeedPriorError answers
		if decided.m[other] == nil {
			decided.m[other] = map[uint64]domain.Event{}
		}
		decided.m[other][pos] = e
	}
	decided.Unlock()
	outcomes := map[string]int{}
	both := func(kind string, c domain.Command) {
		t.Helper()
		pos := w.s.Position() + 1
		e1, err1 := decideAt(w.s, c, w.clock)
		e2, err2 := decideAt(other, c, w.clock)
		outcomes[kind+" "+outcomeOf(err1)]++
		if diff := cmp.Diff(e1, e2, unitsEqual); diff != "" || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("%s %s: original %v, loaded %v (-original +loaded):\n%s", kind, c.CommandID(), err1, err2, diff)
		}
		if err1 != nil {
			return
		}
		w.s.Evolve(pos, e1)
		other.Evolve(pos, e2)
		remember(w.s, pos, e1)
		remember(other, pos, e2)
		w.accept(c, e1, pos)
	}
	for step := 0; step < snapshotLockstepSteps; step++ {
		if w.r.IntN(10) == 0 {
			w.clock = w.clock.Add(time.Duration(1+w.r.IntN(600)) * time.Second)
			due := w.s.DueHolds(w.clock, 8)
			if got := other.DueHolds(w.clock, 8); !cmp.Equal(got, due) {
				t.Fatalf("step %d: due holds %v, loaded state says %v", step, due, got)
			}
			for _, id := range due {
				both("expire", expireHold(id))
			}
			continue
		}
		var (
			kind string
			c    domain.Command
		)
		if w.r.IntN(5) == 0 && len(w.m.takenOrder) > 0 {
			kind, c, _ = w.genRetry()
		} else {
			kind, c, _ = w.genCommand()
		}
		if err := c.Validate(); err != nil {
			continue
		}
		both(kind, c)
	}
	for _, o := range []string{"reverse CREATED", "reverse partial CREATED", "reverse ALREADY_REVERSED", "post CREATED",
		"post PENDING_ALREADY_RESOLVED", "void CREATED", "expire CREATED", "retry EXISTS"} {
		if outcomes[o] == 0 {
			t.Errorf("lockstep never produced %s: %v", o, outcomes)
		}
	}
	if diff := cmp.Diff(w.s, other, stateEqual); diff != "" {
		t.Errorf("states differ after the lockstep (-original +loaded):\n%s", diff)
	}
}

// TestSnapshotRefusesDamage: a flipped byte anywhere, a truncation, or bytes
// appended, and the snapshot is refused, never half-loaded.
func TestSnapshotRefusesDamage(t *testing.T) {
	t.Parallel()
	w := newHoldsWorkload(t, propertySeedDefault)
	for w.step = 0; w.commands < 300; w.step++ {
		w.randomStep()
	}
	data := marshalSnapshot(t, w.s)
	refused := func(what string, b []byte) {
		t.Helper()
		s, err := domain.UnmarshalSnapshot(bytes.NewReader(b))
		if s != nil || !(errors.Is(err, domain.ErrSnapshotCorrupt) || errors.Is(err, domain.ErrSnapshotVersion)) {
			t.Errorf("%s: %v, %v; want ErrSnapshotCorrupt", what, s != nil, err)
		}
	}
	for _, i := range damagedBytes(len(data)) {
		b := bytes.Clone(data)
		b[i] ^= 1 << (i % 8)
		refused(fmt.Sprintf("bit %d of byte %d flipped", i%8, i), b)
		refused(fmt.Sprintf("truncated to %d bytes", i), data[:i])
	}
	refused("a byte appended", append(bytes.Clone(data), 0))
	if _, err := domain.UnmarshalSnapshot(bytes.NewReader(data)); err != nil {
		t.Errorf("the undamaged snapshot: %v", err)
	}
}

// TestSnapshotRefusesAnAccountTwice: a snapshot whose checksum holds but
// which lists an account twice (an encoder's bug) is refused, not loaded
// with one of the two.
func TestSnapshotRefusesAnAccountTwice(t *testing.T) {
	t.Parallel()
	s := domain.NewState()
	s.Evolve(1, domain.AssetDefined{Code: "EUR", Scale: 2})
	s.Evolve(2, domain.AccountOpened{ID: "acct-a", Asset: "EUR", Normal: domain.SideDebit})
	s.Evolve(3, domain.AccountOpened{ID: "acct-b", Asset: "EUR", Normal: domain.SideDebit})
	data := marshalSnapshot(t, s)
	resum := func(b []byte) []byte {
		body := b[:len(b)-sha256.Size]
		sum := sha256.Sum256(body)
		return append(bytes.Clone(body), sum[:]...)
	}
	if !bytes.Equal(resum(data), data) {
		t.Fatal("the checksum is not a SHA-256 of all that precedes it: this test must forge it otherwise")
	}
	if bytes.Count(data, []byte("acct-b")) != 1 {
		t.Fatal("the snapshot does not name acct-b once")
	}
	twice := resum(bytes.Replace(data, []byte("acct-b"), []byte("acct-a"), 1))
	if got, err := domain.UnmarshalSnapshot(bytes.NewReader(twice)); got != nil || !errors.Is(err, domain.ErrSnapshotCorrupt) {
		t.Fatalf("a snapshot with acct-a twice: %v, %v; want ErrSnapshotCorrupt", got != nil, err)
	}
}

// damagedBytesEdge and damagedBytesInside: where TestSnapshotRefusesDamage
// strikes. Every byte of the header and the end (lengths, version, checksum),
// and 2,000 more spread over the body: the checksum covers the body whole, so
// a byte there is refused like any other, and striking each of them (an
// O(n²) test: every damaged copy is read and summed) took most of the
// package's time under the race detector.
const (
	damagedBytesEdge   = 256
	damagedBytesInside = 2000
)

// damagedBytes returns the offsets to damage in a snapshot of n bytes.
func damagedBytes(n int) []int {
	var at []int
	stride := max(1, n/damagedBytesInside)
	for i := 0; i < n; i++ {
		if i < damagedBytesEdge || i >= n-damagedBytesEdge || i%stride == 0 {
			at = append(at, i)
		}
	}
	return at
}

// TestSnapshotVersion: a snapshot of a format this build does not know is
// refused as such, so that a loader can say why; so is one of formats 1 to
// 4, whose index holds 64-bit hashes (SnapshotFormatVersionMin), even with
// its checksum good.
func TestSnapshotVersion(t *testing.T) {
	t.Parallel()
	data := marshalSnapshot(t, newWorld(t))
	if data[len("LDGRSNAP")] != domain.SnapshotFormatVersion {
		t.Fatalf("version byte %d, want %d", data[len("LDGRSNAP")], domain.SnapshotFormatVersion)
	}
	for _, version := range []byte{0, 1, 2, 3, 4, domain.SnapshotFormatVersion + 1} {
		body := bytes.Clone(data[:len(data)-sha256.Size])
		body[len("LDGRSNAP")] = version
		sum := sha256.Sum256(body)
		s, err := domain.UnmarshalSnapshot(bytes.NewReader(append(body, sum[:]...)))
		if s != nil || !errors.Is(err, domain.ErrSnapshotVersion) {
			t.Errorf("a snapshot of version %d: %v, %v; want ErrSnapshotVersion", version, s != nil, err)
		}
	}
}

// TestSnapshotEmptyState: a state with no event round-trips.
func TestSnapshotEmptyState(t *testing.T) {
	t.Parallel()
	s := domain.NewState()
	s.SetPolicy(domain.Policy{EffectivePastMax: time.Hour, EffectiveFutureMax: -time.Second})
	if diff := cmp.Diff(s, unmarshalSnapshot(t, marshalSnapshot(t, s)), stateEqual); diff != "" {
		t.Errorf("empty state (-original +loaded):\n%s", diff)
	}
}

// TestSnapshotRefusedWhileRecording: the state of an atomic batch not yet
// committed or rolled back is not a state of the log.
func TestSnapshotRefusedWhileRecording(t *testing.T) {
	t.Parallel()
	s := newWorld(t)
	s.Begin()
	defer s.Commit()
	if err := s.MarshalSnapshot(&bytes.Buffer{}); err == nil {
		t.Error("MarshalSnapshot during Begin: no error")
	}
}

// TestSipHashVectors pins the index's hash to SipHash: the published
// SipHash-2-4 vectors (key 00..0f; message 00 01 02 ... of each length) and
// SipHash-1-3 as OpenSSL computes it (openssl mac -macopt c-rounds:1 -macopt
// d-rounds:3 SIPHASH). What makes a snapshot's index valid in any build.
func TestSipHashVectors(t *testing.T) {
	t.Parallel()
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	msg := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return string(b)
	}
	for _, tc := range []struct {
		c, d, n int
		want    uint64
	}{
		{2, 4, 0, 0x726fdb47dd0e0e31},
		{2, 4, 1, 0x74f839c593dc67fd},
		{2, 4, 7, 0xab0200f58b01d137},
		{2, 4, 8, 0x93f5f5799a932462},
		{2, 4, 15, 0xa129ca6149be45e5},
		{2, 4, 63, 0x958a324ceb064572},
		{1, 3, 0, 0xabac0158050fc4dc},
		{1, 3, 15, 0xd320d86d2a519956},
		{1, 3, 20, 0xc0dc2f46a6cce040},
	} {
		if got := domain.SipHash(k0, k1, msg(tc.n), tc.c, tc.d); got != tc.want {
			t.Errorf("SipHash-%d-%d of %d bytes = %#x, want %#x", tc.c, tc.d, tc.n, got, tc.want)
		}
	}
}

// FuzzUnmarshalSnapshot: any bytes are refused or loaded, never a panic; what
// loads, round-trips.
func FuzzUnmarshalSnapshot(f *testing.F) {
	w := newWorld(f)
	f.Add(marshalSnapshot(f, w))
	f.Add(append([]byte("LDGRSNAP"), domain.SnapshotFormatVersion))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := domain.UnmarshalSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		again := unmarshalSnapshot(t, marshalSnapshot(t, s))
		if diff := cmp.Diff(s, again, stateEqual); diff != "" {
			t.Errorf("round trip of a loaded snapshot (-first +second):\n%s", diff)
		}
	})
}

// BenchmarkSnapshot measures a snapshot of 1,000,000 transfers over 10,000
// accounts (and 10,000 open holds): its size, and the time to write and read it.
func BenchmarkSnapshot(b *testing.B) {
	s := benchState(b, 10_000, 1_000_000)
	data := marshalSnapshot(b, s)
	b.ReportMetric(float64(len(data))/float64(s.TransferCount()), "B/transfer")
	b.Run("marshal", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := s.MarshalSnapshot(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(data)))
	})
	b.Run("unmarshal", func(b *testing.B) {
		for b.Loop() {
			unmarshalSnapshot(b, data)
		}
		b.SetBytes(int64(len(data)))
	})
}

// BenchmarkIndexLookup measures the id index's probe (TransferCandidate) in a
// state of 1,000,000 transfers: the hash of the id and the index look-up.
func BenchmarkIndexLookup(b *testing.B) {
	s := benchState(b, 10_000, 1_000_000)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("t-%d", (i*7919)%1_000_000)
	}
	for i := 0; b.Loop(); i++ {
		if _, ok := s.TransferCandidate(ids[i&(len(ids)-1)]); !ok {
			b.Fatal("transfer not indexed")
		}
	}
}

// benchState applies transfers over accounts, one in a hundred a hold.
func benchState(b *testing.B, accounts, transfers int) *domain.State {
	b.Helper()
	s := domain.NewState()
	pos := uint64(0)
	apply := func(e domain.Event) { pos++; s.Evolve(pos, e) }
	apply(domain.AssetDefined{Code: "USD", Scale: 2})
	for i := 0; i < accounts; i++ {
		apply(domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
	}
	at := time.Unix(1_800_000_000, 0).UTC()
	expires := at.Add(time.Hour)
	for i := 0; i < transfers; i++ {
		postings := []domain.Posting{{Debit: fmt.Sprintf("acc-%d", i%accounts), Credit: fmt.Sprintf("acc-%d", (i+1)%accounts),
			Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}
		if i%100 == 0 {
			apply(domain.TransferPending{ID: fmt.Sprintf("t-%d", i), EffectiveAt: at, Postings: postings, ExpiresAt: &expires})
			continue
		}
		apply(domain.TransferCommitted{ID: fmt.Sprintf("t-%d", i), EffectiveAt: at, Postings: postings})
	}
	return s
}

// TestFoldStateFoldsTheSame: a fold-only state (what an audit's replay
// folds into) given every event and batch of the holds workload ends equal
// to the writer's state in everything but the id index; Decide and
// MarshalSnapshot refuse it.
func TestFoldStateFoldsTheSame(t *testing.T) {
	t.Parallel()
	seed := propertySeed(t)
	w := newHoldsWorkload(t, seed)
	w.fold = domain.NewFoldState()
	for w.step = 0; w.commands < snapshotWorkloadCommands; w.step++ {
		w.randomStep()
		if t.Failed() {
			t.Fatalf("workload failed at step %d (seed %#x)", w.step, seed)
		}
	}
	if w.s.TransferCount() == 0 || w.s.HoldCount() == 0 {
		t.Fatalf("the workload took %d ids and left %d holds open: too little to compare", w.s.TransferCount(), w.s.HoldCount())
	}
	if diff := cmp.Diff(w.s, w.fold, stateEqual, cmpopts.IgnoreFields(domain.State{}, "ids", "collided", "key")); diff != "" {
		t.Fatalf("fold-only state differs (-writer's +fold's):\n%s", diff)
	}
	if n := w.fold.TransferCount(); n != 0 {
		t.Errorf("fold-only TransferCount = %d, want 0", n)
	}
	if err := w.fold.MarshalSnapshot(&bytes.Buffer{}); err == nil {
		t.Error("MarshalSnapshot of a fold-only state: no error")
	}
	defer func() {
		if recover() == nil {
			t.Error("Decide on a fold-only state did not panic")
		}
	}()
	// A validated command that looks no id up: the guard itself refuses it.
	c := asset("NEW", 2)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	_, _ = domain.Decide(w.fold, c, now)
}
