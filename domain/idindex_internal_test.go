package domain

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// TestIDIndexModel runs random adds, changes, removes, look-ups and holds
// of merges on the compact index and on a map side by side, and checks
// after every step that both answer the same, and regularly that the index
// holds exactly the map's entries, in order, in well-formed shards. Some
// hashes share one shard, so that shard merges many times at many sizes.
func TestIDIndexModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	x, model := newIDIndex(), map[uint64]uint64{}
	var keys []uint64
	newHash := func() uint64 {
		switch r.IntN(3) {
		case 0:
			return 0x42<<56 | r.Uint64()>>8 // one crowded shard
		case 1:
			return r.Uint64() & 0xff0000000000000f // few distinct hashes
		}
		return r.Uint64()
	}
	pick := func() uint64 {
		if len(keys) == 0 || r.IntN(4) == 0 {
			return newHash()
		}
		return keys[r.IntN(len(keys))]
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
			_, had := model[h]
			if !had {
				keys = append(keys, h)
			}
			model[h] = v
			x.set(h, v)
			if !had {
				checkRecentBound(t, x, h)
			}
		case op < 600: // add only
			h, v := pick(), r.Uint64()
			_, had := model[h]
			if added := x.add(h, v); added == had {
				t.Fatalf("step %d: add(%#x) = %v, the map had it: %v", step, h, added, had)
			}
			if !had {
				keys = append(keys, h)
				model[h] = v
				checkRecentBound(t, x, h)
			}
		case op < 700: // remove (the undo of an add)
			h := pick()
			delete(model, h)
			x.remove(h)
		default:
			h := pick()
			v, ok := x.get(h)
			w, wok := model[h]
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
	if x.shards[0x42].recent == nil || len(x.shards[0x42].base) < 5_000 {
		t.Fatalf("the crowded shard holds %d merged entries: the test did not exercise merges", len(x.shards[0x42].base))
	}
}

// checkRecentBound fails when merges are not held and the shard of h, just
// added, holds more recent entries than its bound.
func checkRecentBound(t *testing.T, x *idIndex, h uint64) {
	t.Helper()
	sh := x.shard(h)
	if !x.held && len(sh.recent) > recentMax(len(sh.base)) {
		t.Fatalf("shard %d: %d recent entries over %d merged", h>>56, len(sh.recent), len(sh.base))
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
		if sh := &x.shards[s]; len(sh.recent) > recentMax(len(sh.base)) {
			t.Fatalf("shard %d: %d recent entries over %d merged", s, len(sh.recent), len(sh.base))
		}
	}
}

// checkIDIndex fails unless x holds exactly model's entries, each gives them
// in ascending order, and every shard is well formed.
func checkIDIndex(t *testing.T, x *idIndex, model map[uint64]uint64) {
	t.Helper()
	var got []idEntry
	x.each(func(h, v uint64) bool { got = append(got, idEntry{h, v}); return true })
	want := make([]idEntry, 0, len(model))
	for h, v := range model {
		want = append(want, idEntry{h, v})
	}
	slices.SortFunc(want, byHash)
	if !slices.Equal(got, want) {
		t.Fatalf("each gave %d entries, the map holds %d (or they differ)", len(got), len(want))
	}
	for s := range x.shards {
		sh := &x.shards[s]
		for i, e := range sh.base {
			if int(e.h>>56) != s {
				t.Fatalf("shard %d holds %#x", s, e.h)
			}
			if i > 0 && sh.base[i-1].h >= e.h {
				t.Fatalf("shard %d not sorted at %d", s, i)
			}
			if _, ok := sh.recent[e.h]; ok {
				t.Fatalf("%#x both in shard %d's base and its recent map", e.h, s)
			}
		}
		for h := range sh.recent {
			if int(h>>56) != s {
				t.Fatalf("shard %d's recent map holds %#x", s, h)
			}
		}
	}
}

// TestIDIndexLoader: an index built from its own entries in order, or from
// them shuffled (a snapshot from before they were sorted), equals it; a hash
// twice is refused.
func TestIDIndexLoader(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	x := newIDIndex()
	model := map[uint64]uint64{}
	for range 50_000 {
		h, v := r.Uint64(), r.Uint64()
		x.set(h, v)
		model[h] = v
	}
	var entries []idEntry
	x.each(func(h, v uint64) bool { entries = append(entries, idEntry{h, v}); return true })

	load := func(es []idEntry, hint int) (*idIndex, bool) {
		l := newIDIndexLoader(hint)
		for _, e := range es {
			l.add(e.h, e.v)
		}
		return l.done()
	}
	for _, hint := range []int{0, len(entries), 10 * len(entries)} {
		y, ok := load(entries, hint)
		if !ok || !x.Equal(y) || !y.Equal(x) {
			t.Fatalf("sorted load (hint %d): ok %v, equal %v", hint, ok, ok && x.Equal(y))
		}
		checkIDIndex(t, y, model)
	}
	shuffled := slices.Clone(entries)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	y, ok := load(shuffled, len(shuffled))
	if !ok || !x.Equal(y) {
		t.Fatalf("shuffled load: ok %v", ok)
	}
	checkIDIndex(t, y, model)

	y.set(entries[0].h, entries[0].v+1)
	if x.Equal(y) {
		t.Fatal("Equal ignores a changed value")
	}
	y.set(entries[0].h, entries[0].v)
	y.set(entries[0].h+1, 1)
	if x.Equal(y) || y.Equal(x) {
		t.Fatal("Equal ignores an entry more")
	}
	if _, ok := load(append(shuffled, shuffled[7]), 0); ok {
		t.Fatal("a hash twice was loaded")
	}
	if _, ok := load(append(slices.Clone(entries[:10]), entries[9]), 0); ok {
		t.Fatal("a hash twice in order was loaded")
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
		merged[i] = len(s.ids.shards[i].base)
	}
	s.Begin()
	batch()
	for i := range merged {
		if n := len(s.ids.shards[i].base); n != merged[i] {
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
