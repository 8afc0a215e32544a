package domain

import (
	"cmp"
	"math/bits"
	"slices"
)

// idIndex maps the hash of every id in the transfer id space to the
// position that took it, with its status in the top byte (State.ids).
//
// A writer holding ten million transfers holds ten million entries, so the
// index is kept compact. It keeps a hash's top 40 bits (idHashBits): the top
// byte picks one of 256 shards, and the next 32, the entry's key there, fit
// a uint32. An entry is then 12 bytes in sorted arrays, 14.8 with their room
// to grow and the recent maps, 15.5 loaded from a snapshot
// (BenchmarkIDIndexMemory, a million entries; 21.6 and 19.2 with 64-bit
// hashes, 20 to 40 in a Go map). Each shard keeps:
//   - keys and vals, parallel arrays sorted by key, grown a quarter at a
//     time;
//   - a directory of keys by their top bits, so that a look-up reads one
//     bucket of about 8 to 16 keys, not a binary search's 20 probes;
//   - recent, a small map of the entries added since the last merge. It is
//     merged into the arrays when it grows past a sixteenth of them: a merge
//     moves about seventeen entries an insert, amortized, and a map keeps
//     the room it once had, so a smaller bound is less memory (an eighth
//     took 18 bytes an entry in all, and BenchmarkStateAtScale 22 MiB more).
//
// An entry found is a candidate: the caller confirms it against the event
// at its position, and an id whose 40 bits another id holds is kept by its
// exact id (State.collided). Among n ids about n²/2^41 pairs share 40 bits,
// about 45 at ten million: each costs one read of an event, when the second
// id comes.
//
// A look-up costs two to four cache misses (recent, the directory, the
// bucket's keys, its value) where the map took one or two: a few hundred ns
// at a million entries (BenchmarkIndexLookup), a fraction of a percent of a
// transfer.
type idIndex struct {
	shards [idShards]idShard
	n      int
	// held defers merges (hold): while an all-or-nothing batch is open,
	// what it adds stays in the recent maps, where its undo is a map delete
	// and not a shift of a shard's arrays.
	held bool
	// scratch is reused by merges to sort a shard's recent entries.
	scratch []idEntry
}

const (
	idShards = 256
	// idRecentMin is how many entries a shard's recent map holds, at least,
	// before a merge: small shards are not copied at every insert.
	idRecentMin = 64
	// idHashBits is how much of a hash the index keeps: its shard's byte
	// and a 32-bit key. Two hashes alike in these bits are one entry.
	idHashBits = 40
	// idHashMask keeps those bits of a hash.
	idHashMask uint64 = 1<<64 - 1<<(64-idHashBits)
)

type idShard struct {
	keys []uint32 // sorted, no key twice
	vals []uint64 // vals[i] is keys[i]'s value
	// recent holds the entries added since the last merge, none of them
	// in keys.
	recent map[uint32]uint64
	// dir is the directory of keys (reindex): bucket b's entries are
	// keys[dir[b]:dir[b+1]]; shift takes a key down to its bucket.
	dir   []uint32
	shift uint8
}

// idEntry is a recent entry, sorted by key for a merge.
type idEntry struct {
	k uint32
	v uint64
}

func newIDIndex() *idIndex { return &idIndex{} }

// locate returns h's shard and its key there: what the index keeps of h.
func (x *idIndex) locate(h uint64) (*idShard, uint32) {
	return &x.shards[h>>56], uint32(h >> (64 - idHashBits))
}

// Len is the number of entries.
func (x *idIndex) Len() int { return x.n }

// find returns where k is, or would be, in a shard's keys: the directory
// gives the few keys k's bucket holds, searched in one or two cache lines.
func (sh *idShard) find(k uint32) (int, bool) {
	if len(sh.keys) == 0 {
		return 0, false
	}
	// With one bucket, shift is 32: Go shifts a uint32 by 32 to 0.
	b := k >> sh.shift
	lo, hi := int(sh.dir[b]), int(sh.dir[b+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if sh.keys[m] < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(sh.keys) && sh.keys[lo] == k
}

// reindex rebuilds a shard's directory after its keys changed. Bucket b
// holds the keys that start with b's bits: hashes are uniform, and 2^k
// buckets for 2^(k+3) to 2^(k+4) entries hold 8 to 16 each, so the
// directory takes under a byte an entry.
func (sh *idShard) reindex() {
	n := len(sh.keys)
	k := max(bits.Len(uint(n))-4, 0)
	size := 1<<k + 1
	if cap(sh.dir) < size {
		sh.dir = make([]uint32, size)
	}
	sh.dir = sh.dir[:size]
	sh.shift = uint8(32 - k)
	j := 0
	for b := range 1 << k {
		for j < n && sh.keys[j]>>sh.shift < uint32(b) {
			j++
		}
		sh.dir[b] = uint32(j)
	}
	sh.dir[1<<k] = uint32(n)
}

// get returns the value of h.
func (x *idIndex) get(h uint64) (uint64, bool) {
	sh, k := x.locate(h)
	if v, ok := sh.recent[k]; ok {
		return v, true
	}
	if i, ok := sh.find(k); ok {
		return sh.vals[i], true
	}
	return 0, false
}

// set gives h the value v, adding h when absent.
func (x *idIndex) set(h, v uint64) {
	sh, k := x.locate(h)
	if _, ok := sh.recent[k]; ok {
		sh.recent[k] = v
		return
	}
	if i, ok := sh.find(k); ok {
		sh.vals[i] = v
		return
	}
	x.insert(sh, k, v)
}

// add adds h with the value v, unless h is there already: then it changes
// nothing and returns false.
func (x *idIndex) add(h, v uint64) bool {
	sh, k := x.locate(h)
	if _, ok := sh.recent[k]; ok {
		return false
	}
	if _, ok := sh.find(k); ok {
		return false
	}
	x.insert(sh, k, v)
	return true
}

// insert adds k, known absent, to its shard's recent entries.
func (x *idIndex) insert(sh *idShard, k uint32, v uint64) {
	if sh.recent == nil {
		sh.recent = make(map[uint32]uint64)
	}
	sh.recent[k] = v
	x.n++
	if !x.held && len(sh.recent) > recentMax(len(sh.keys)) {
		x.merge(sh)
	}
}

// recentMax is how many recent entries a shard of n merged ones holds
// before a merge.
func recentMax(n int) int { return max(idRecentMin, n/16) }

// hold defers merges until release: what is added meanwhile can be removed
// from a map. The recent maps then outgrow their bound by at most what the
// held batch adds (a request's items, ItemsPerRequestMax).
func (x *idIndex) hold() { x.held = true }

// release ends a hold and merges the shards it let outgrow their bound: a
// ledger whose requests are all atomic would otherwise never merge.
func (x *idIndex) release() {
	x.held = false
	for s := range x.shards {
		if sh := &x.shards[s]; len(sh.recent) > recentMax(len(sh.keys)) {
			x.merge(sh)
		}
	}
}

// remove takes h out (the undo of an add). An add undone is in its
// shard's recent map when merges were held since (hold); from the merged
// entries, the removal shifts the shard's arrays.
func (x *idIndex) remove(h uint64) {
	sh, k := x.locate(h)
	if _, ok := sh.recent[k]; ok {
		delete(sh.recent, k)
		x.n--
		return
	}
	if i, ok := sh.find(k); ok {
		sh.keys = slices.Delete(sh.keys, i, i+1)
		sh.vals = slices.Delete(sh.vals, i, i+1)
		sh.reindex()
		x.n--
	}
}

// sortedRecent appends a shard's recent entries to buf, in key order.
func (sh *idShard) sortedRecent(buf []idEntry) []idEntry {
	for k, v := range sh.recent {
		buf = append(buf, idEntry{k, v})
	}
	slices.SortFunc(buf, func(a, b idEntry) int { return cmp.Compare(a.k, b.k) })
	return buf
}

// mergeSorted calls fn with the entries of keys and vals and those of add,
// both in key order and without a key in common, in key order; it stops
// when fn returns false, and says whether it went to the end.
func mergeSorted(keys []uint32, vals []uint64, add []idEntry, fn func(k uint32, v uint64) bool) bool {
	i, j := 0, 0
	for i < len(keys) || j < len(add) {
		var ok bool
		if j == len(add) || i < len(keys) && keys[i] < add[j].k {
			ok, i = fn(keys[i], vals[i]), i+1
		} else {
			ok, j = fn(add[j].k, add[j].v), j+1
		}
		if !ok {
			return false
		}
	}
	return true
}

// merge moves a shard's recent entries into its arrays.
func (x *idIndex) merge(sh *idShard) {
	add := sh.sortedRecent(x.scratch[:0])
	clear(sh.recent)
	x.scratch = add[:0]
	n := len(sh.keys)
	need := n + len(add)
	// The two arrays may differ in capacity: a loader's appends grow each
	// to its own size class.
	if need > min(cap(sh.keys), cap(sh.vals)) {
		// A quarter to spare, so that every other merge is in place; the
		// merge itself fills the new arrays, in one pass.
		keys, vals := make([]uint32, 0, need+need/4), make([]uint64, 0, need+need/4)
		mergeSorted(sh.keys, sh.vals, add, func(k uint32, v uint64) bool {
			keys, vals = append(keys, k), append(vals, v)
			return true
		})
		sh.keys, sh.vals = keys, vals
	} else {
		// From the back, in place: the merged entries move up, at most by
		// len(add), into room not yet read.
		i, j := n-1, len(add)-1
		sh.keys, sh.vals = sh.keys[:need], sh.vals[:need]
		for to := need - 1; j >= 0; to-- {
			if i >= 0 && sh.keys[i] > add[j].k {
				sh.keys[to], sh.vals[to], i = sh.keys[i], sh.vals[i], i-1
			} else {
				sh.keys[to], sh.vals[to], j = add[j].k, add[j].v, j-1
			}
		}
	}
	sh.reindex()
}

// each calls fn for every entry in ascending hash order, and stops when fn
// returns false; h is what the index keeps (idHashMask). It changes
// nothing (a snapshot may be encoded while nothing else runs on the state,
// but never merges it).
func (x *idIndex) each(fn func(h, v uint64) bool) {
	var add []idEntry
	for s := range x.shards {
		sh := &x.shards[s]
		add = sh.sortedRecent(add[:0])
		top := uint64(s) << 56
		if !mergeSorted(sh.keys, sh.vals, add, func(k uint32, v uint64) bool {
			return fn(top|uint64(k)<<(64-idHashBits), v)
		}) {
			return
		}
	}
}

// idIndexLoader builds an index from entries in ascending hash order (what
// each gives, and what a snapshot holds): each is appended to its shard's
// arrays, with no sort and no merge.
type idIndexLoader struct {
	x    *idIndex
	last uint64
}

func newIDIndexLoader(n int) *idIndexLoader {
	x := newIDIndex()
	if per := n / idShards; per > 0 {
		// Hashes spread evenly over the shards: an eighth to spare covers
		// the variation at every size where preallocating matters.
		per += per/8 + 16
		for s := range x.shards {
			x.shards[s].keys = make([]uint32, 0, per)
			x.shards[s].vals = make([]uint64, 0, per)
		}
	}
	return &idIndexLoader{x: x}
}

// add appends h with the value v, or returns false, adding nothing, when h
// is not above the last hash added (in the bits the index keeps): out of
// order, or a hash twice.
func (l *idIndexLoader) add(h, v uint64) bool {
	h &= idHashMask
	if l.x.n > 0 && h <= l.last {
		return false
	}
	l.last = h
	sh, k := l.x.locate(h)
	sh.keys = append(sh.keys, k)
	sh.vals = append(sh.vals, v)
	l.x.n++
	return true
}

// done returns the index.
func (l *idIndexLoader) done() *idIndex {
	for s := range l.x.shards {
		l.x.shards[s].reindex()
	}
	return l.x
}
