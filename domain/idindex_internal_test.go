package domain

import (
	"cmp"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

// TestIDIndexModel runs random adds, changes, removes, look-ups and holds
// of merges on the compact index and on a map side by side, and checks
// after every step that both answer the same, and regularly that the index
// holds exactly the map's entries, in order, in well-formed shards. The map
// is keyed by the bits the index keeps (idHashMask); the index is given
// hashes whose other bits vary, which it must ignore. Some hashes share one
// shard, so that shard merges many times at many sizes; some are at the
// ends of a shard's keys.
func TestIDIndexModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	x, model := newIDIndex(), map[uint64]uint64{}
	var hashes []uint64
	const low = 1<<(64-idHashBits) - 1 // the bits the index drops
	newHash := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0x42<<56 | r.Uint64()>>8 // one crowded shard
		case 1:
			return r.Uint64() & (0xff0000000f000000 | low) // few distinct entries
		case 2:
			ends := [...]uint64{0, 1, 1<<32 - 2, 1<<32 - 1}
			return r.Uint64()&(0xff<<56|low) | ends[r.IntN(len(ends))]<<(64-idHashBits)
		}
		return r.Uint64()
	}
	// pick gives a new hash, or one used before with other dropped bits.
	pick := func() uint64 {
		if len(hashes) == 0 || r.IntN(4) == 0 {
			return newHash()
		}
		return hashes[r.IntN(len(hashes))] ^ r.Uint64()&low
	}
	const steps = 200_000
	for step := range steps {
		switch op := r.IntN(1000); {
		case op < 2: // hold merges, or release them
			if x.held {
				x.release()
				checkAllWithinBound(t, x)
			} else {
				x.hold()
			}
		case op < 300: // change, or add
			h, v := pick(), r.Uint64()
			_, had := model[h&idHashMask]
			if !had {
				hashes = append(hashes, h)
			}
			model[h&idHashMask] = v
			x.set(h, v)
			if !had {
				checkRecentBound(t, x, h)
			}
		case op < 600: // add only
			h, v := pick(), r.Uint64()
			_, had := model[h&idHashMask]
			if added := x.add(h, v); added == had {
				t.Fatalf("step %d: add(%#x) = %v, the map had it: %v", step, h, added, had)
			}
			if !had {
				hashes = append(hashes, h)
				model[h&idHashMask] = v
				checkRecentBound(t, x, h)
			}
		case op < 700: // remove (the undo of an add)
			h := pick()
			delete(model, h&idHashMask)
			x.remove(h)
		default:
			h := pick()
			v, ok := x.get(h)
			w, wok := model[h&idHashMask]
			if ok != wok || v != w {
				t.Fatalf("step %d: get(%#x) = %#x, %v; the map holds %#x, %v", step, h, v, ok, w, wok)
			}
		}
		if x.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, the map holds %d", step, x.Len(), len(model))
		}
		if step%20_000 == 0 || step == steps-1 {
			checkIDIndex(t, x, model)
		}
	}
	if x.shards[0x42].recent == nil || len(x.shards[0x42].keys) < 5_000 {
		t.Fatalf("the crowded shard holds %d merged entries: the test did not exercise merges", len(x.shards[0x42].keys))
	}
}

// checkRecentBound fails when merges are not held and the shard of h, just
// added, holds more recent entries than its bound.
func checkRecentBound(t *testing.T, x *idIndex, h uint64) {
	t.Helper()
	sh, _ := x.locate(h)
	if !x.held && len(sh.recent) > recentMax(len(sh.keys)) {
		t.Fatalf("shard %d: %d recent entries over %d merged", h>>56, len(sh.recent), len(sh.keys))
	}
}

// checkAllWithinBound fails unless every shard holds at most its bound of
// recent entries (true after a release, which merges those that do not).
func checkAllWithinBound(t *testing.T, x *idIndex) {
	t.Helper()
	if x.held {
		t.Fatal("merges still held")
	}
	for s := range x.shards {
		if sh := &x.shards[s]; len(sh.recent) > recentMax(len(sh.keys)) {
			t.Fatalf("shard %d: %d recent entries over %d merged", s, len(sh.recent), len(sh.keys))
		}
	}
}

// hashEntry is an entry as each gives it.
type hashEntry struct{ h, v uint64 }

func entries(x *idIndex) []hashEntry {
	var es []hashEntry
	x.each(func(h, v uint64) bool { es = append(es, hashEntry{h, v}); return true })
	return es
}

// checkIDIndex fails unless x holds exactly model's entries (keyed by the
// bits the index keeps), each gives them in ascending order, and every
// shard is well formed: its arrays as long as each other, its keys sorted,
// none of them in its recent map, and each found where it is.
func checkIDIndex(t *testing.T, x *idIndex, model map[uint64]uint64) {
	t.Helper()
	got := entries(x)
	want := make([]hashEntry, 0, len(model))
	for h, v := range model {
		want = append(want, hashEntry{h, v})
	}
	slices.SortFunc(want, func(a, b hashEntry) int { return cmp.Compare(a.h, b.h) })
	if !slices.Equal(got, want) {
		t.Fatalf("each gave %d entries, the map holds %d (or they differ)", len(got), len(want))
	}
	for s := range x.shards {
		sh := &x.shards[s]
		if len(sh.keys) != len(sh.vals) {
			t.Fatalf("shard %d: %d keys, %d values", s, len(sh.keys), len(sh.vals))
		}
		for i, k := range sh.keys {
			if i > 0 && sh.keys[i-1] >= k {
				t.Fatalf("shard %d not sorted at %d", s, i)
			}
			if _, ok := sh.recent[k]; ok {
				t.Fatalf("key %#x both in shard %d's arrays and its recent map", k, s)
			}
			if j, ok := sh.find(k); !ok || j != i {
				t.Fatalf("shard %d: key %#x at %d found at %d, %v", s, k, i, j, ok)
			}
		}
	}
}

// TestIDIndexLoader: an index built from its own entries in order, or from
// hashes in that order with bits it drops, equals it; a hash out of order,
// twice, or alike in the bits kept to the last, is refused.
func TestIDIndexLoader(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	x := newIDIndex()
	model := map[uint64]uint64{}
	var raw []hashEntry // as given to x: with the bits it drops
	for range 50_000 {
		h, v := r.Uint64(), r.Uint64()
		if _, ok := model[h&idHashMask]; ok {
			continue
		}
		x.set(h, v)
		model[h&idHashMask] = v
		raw = append(raw, hashEntry{h, v})
	}
	es := entries(x)

	// load returns the index of es, or false at the first entry refused.
	load := func(es []hashEntry, hint int) (*idIndex, bool) {
		l := newIDIndexLoader(hint)
		for _, e := range es {
			if !l.add(e.h, e.v) {
				return nil, false
			}
		}
		return l.done(), true
	}
	for _, hint := range []int{0, len(es), 10 * len(es)} {
		y, ok := load(es, hint)
		if !ok || !x.Equal(y) || !y.Equal(x) {
			t.Fatalf("sorted load (hint %d): ok %v, equal %v", hint, ok, ok && x.Equal(y))
		}
		checkIDIndex(t, y, model)
	}
	slices.SortFunc(raw, func(a, b hashEntry) int { return cmp.Compare(a.h, b.h) })
	y, ok := load(raw, 0)
	if !ok || !x.Equal(y) {
		t.Fatalf("load of the hashes as given, in order: ok %v", ok)
	}

	y.set(es[0].h, es[0].v+1)
	if x.Equal(y) {
		t.Fatal("Equal ignores a changed value")
	}
	y.set(es[0].h, es[0].v)
	y.set(es[0].h+1<<(64-idHashBits), 1)
	if x.Equal(y) || y.Equal(x) {
		t.Fatal("Equal ignores an entry more")
	}
	swapped := slices.Clone(es[:10])
	swapped[3], swapped[4] = swapped[4], swapped[3]
	for name, bad := range map[string][]hashEntry{
		"out of order":              swapped,
		"a hash twice":              append(slices.Clone(es[:10]), es[9]),
		"alike in their top bits":   append(slices.Clone(es[:10]), hashEntry{es[9].h | 0xabcdef, 7}),
		"below the first, shuffled": append(slices.Clone(es[5:10]), es[0]),
	} {
		if _, ok := load(bad, 0); ok {
			t.Errorf("%s: loaded", name)
		}
	}
}

// TestIDIndexTopBits: two hashes alike in their top idHashBits bits are
// one entry, whether it is recent or merged: the second is not added, and
// finds, changes and removes the first's.
func TestIDIndexTopBits(t *testing.T) {
	t.Parallel()
	const h1, h2 = 0x1234_5678_9a00_0001, 0x1234_5678_9aff_ffff
	for _, merged := range []bool{false, true} {
		x := newIDIndex()
		if !x.add(h1, 1) {
			t.Fatal("add of a first hash refused")
		}
		if merged {
			sh, _ := x.locate(h1)
			x.merge(sh)
			if len(sh.keys) != 1 || len(sh.recent) != 0 {
				t.Fatalf("after a merge: %d merged, %d recent", len(sh.keys), len(sh.recent))
			}
		}
		if x.add(h2, 2) {
			t.Fatalf("merged %v: add(%#x) with %#x indexed = true, want false", merged, h2, uint64(h1))
		}
		if v, ok := x.get(h2); !ok || v != 1 || x.Len() != 1 {
			t.Fatalf("merged %v: get(%#x) = %d, %v; Len %d; want 1, true; 1", merged, h2, v, ok, x.Len())
		}
		x.set(h2, 3)
		if v, _ := x.get(h1); v != 3 {
			t.Fatalf("merged %v: set(%#x) left %#x at %d, want 3", merged, h2, uint64(h1), v)
		}
		if es := entries(x); len(es) != 1 || es[0].h != h1&idHashMask {
			t.Fatalf("merged %v: each gave %#x, want one hash %#x", merged, es, h1&idHashMask)
		}
		x.remove(h2)
		if _, ok := x.get(h1); ok || x.Len() != 0 {
			t.Fatalf("merged %v: remove(%#x) left %#x (Len %d)", merged, h2, uint64(h1), x.Len())
		}
	}
}

// TestIDIndexMergeUnequalRoom: a shard whose two arrays have room for
// different numbers of entries (a loader's appends grow each to its own size
// class) merges into new arrays when either is too short, and in place when
// both have room, and holds every entry after.
func TestIDIndexMergeUnequalRoom(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ keysCap, valsCap int }{{140, 110}, {110, 140}, {140, 130}} {
		x := newIDIndex()
		model := map[uint64]uint64{}
		sh := &x.shards[7]
		sh.keys, sh.vals = make([]uint32, 0, c.keysCap), make([]uint64, 0, c.valsCap)
		for i := range 100 {
			h := uint64(7)<<56 | uint64(2*i+1)<<24
			sh.keys, sh.vals = append(sh.keys, uint32(h>>24)), append(sh.vals, uint64(i))
			model[h] = uint64(i)
			x.n++
		}
		sh.reindex()
		x.hold() // no merge until asked
		for i := range 20 {
			h := uint64(7)<<56 | uint64(4*i+2)<<24
			if !x.add(h, uint64(1000+i)) {
				t.Fatalf("caps %v: add(%#x) refused", c, h)
			}
			model[h] = uint64(1000 + i)
		}
		x.merge(sh)
		x.held = false
		if len(sh.recent) != 0 || len(sh.keys) != 120 {
			t.Fatalf("caps %v: %d merged, %d recent after a merge", c, len(sh.keys), len(sh.recent))
		}
		checkIDIndex(t, x, model)
	}
}

// TestIDIndexRollback: a batch that adds ids enough to merge shards, and
// changes statuses of old and new ones, leaves the index as it was when
// rolled back, and everything in it when committed. Merges wait for the
// batch's end, then resume.
func TestIDIndexRollback(t *testing.T) {
	t.Parallel()
	s := NewState()
	id := func(i int) string { return "tr-" + strconv.Itoa(i) }
	for i := range 5_000 {
		s.indexID(id(i), uint64(i+1), idPending)
	}
	before := map[uint64]uint64{}
	s.ids.each(func(h, v uint64) bool { before[h] = v; return true })

	batch := func() {
		for i := range 3_000 {
			s.setIDStatus(id(i), idPendingResolved)
		}
		for i := 5_000; i < 60_000; i++ {
			s.indexID(id(i), uint64(i+1), idPending)
			if i%3 == 0 {
				s.setIDStatus(id(i), idPendingExpired)
			}
		}
	}
	merged := make([]int, idShards)
	for i := range merged {
		merged[i] = len(s.ids.shards[i].keys)
	}
	s.Begin()
	batch()
	for i := range merged {
		if n := len(s.ids.shards[i].keys); n != merged[i] {
			t.Fatalf("shard %d merged during the batch: %d entries, %d before", i, n, merged[i])
		}
	}
	s.Rollback()
	checkIDIndex(t, s.ids, before)
	checkAllWithinBound(t, s.ids)

	s.Begin()
	batch()
	s.Commit()
	checkAllWithinBound(t, s.ids)
	for i := range 60_000 {
		pos, status, _, ok := s.lookupID(id(i))
		want := idPending
		switch {
		case i < 3_000:
			want = idPendingResolved
		case i >= 5_000 && i%3 == 0:
			want = idPendingExpired
		}
		if !ok || pos != uint64(i+1) || status != want {
			t.Fatalf("id %d: %d, %d, %v; want %d, %d", i, pos, status, ok, i+1, want)
		}
	}
	if n := s.TransferCount(); n != 60_000 {
		t.Fatalf("TransferCount = %d, want 60000", n)
	}
	for i := 60_000; i < 61_000; i++ {
		s.indexID(id(i), uint64(i+1), idDone)
		checkRecentBound(t, s.ids, s.key.hash(id(i)))
	}
}

// TestIDIndexAtomicOnly: a ledger whose every request is all or nothing
// still merges: what a hold deferred is merged when it ends.
func TestIDIndexAtomicOnly(t *testing.T) {
	t.Parallel()
	s := NewState()
	for b := range 200 {
		s.Begin()
		for i := range 1_000 {
			s.indexID("tr-"+strconv.Itoa(b*1_000+i), uint64(b*1_000+i+1), idDone)
		}
		s.Commit()
	}
	checkAllWithinBound(t, s.ids)
	recent := 0
	for i := range s.ids.shards {
		recent += len(s.ids.shards[i].recent)
	}
	if recent > s.TransferCount()/4 {
		t.Fatalf("%d of %d ids in the recent maps", recent, s.TransferCount())
	}
}

// BenchmarkIDIndexMemory reports the index's bytes an entry at 1,000,000
// entries: grown by inserts (a writer folding its log), and loaded in
// order (from a snapshot).
//
//	go test -run '^$' -bench IDIndexMemory -benchtime 1x ./domain
func BenchmarkIDIndexMemory(b *testing.B) {
	const n = 1_000_000
	r := rand.New(rand.NewPCG(5, 6))
	hashes := make([]uint64, n)
	for i := range hashes {
		hashes[i] = r.Uint64()
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		x := newIDIndex()
		for i, h := range hashes {
			x.set(h, uint64(i))
		}
		grown := heap()
		l := newIDIndexLoader(x.Len())
		x.each(func(h, v uint64) bool { l.add(h, v); return true })
		y := l.done()
		loaded := heap()
		b.ReportMetric(float64(grown-before)/n, "B/entry-grown")
		b.ReportMetric(float64(loaded-grown)/n, "B/entry-loaded")
		runtime.KeepAlive(x)
		runtime.KeepAlive(y)
	}
}
