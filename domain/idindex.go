package domain

import (
	"cmp"
	"math/bits"
	"slices"
)

// idIndex maps the 64-bit hash of every id in the transfer id space to the
// position that took it, with its status in the top byte (State.ids).
//
// A writer holding ten million transfers holds ten million entries, so the
// index is kept compact: about 20 bytes an entry in sorted arrays, where a
// Go map took 20 to 40 (300 MiB at ten million after a restart,
// BENCHMARKS.md "Scale, session 13"). The hashes are split into 256 shards
// by their top byte. Each shard keeps:
//   - base, a sorted array, grown a quarter at a time;
//   - a directory of base by the hash's next bits, so that a look-up reads
//     one bucket of about 8 to 16 entries, not a binary search's 20 probes;
//   - recent, a small map of the entries added since the last merge. It is
//     merged into base when it grows past an eighth of base: a merge moves
//     about nine entries an insert, amortized.
//
// A look-up costs two or three cache misses (recent, the directory, the
// bucket) where the map took one or two: about 250 ns at a million entries
// instead of 130 (BenchmarkIndexLookup), a fraction of a percent of a
// transfer.
type idIndex struct {
	shards [idShards]idShard
	n      int
	// held defers merges (hold): while an all-or-nothing batch is open,
	// what it adds stays in the recent maps, where its undo is a map delete
	// and not a shift of a shard's array.
	held bool
	// scratch is reused by merges to sort a shard's recent entries.
	scratch []idEntry
}

const (
	idShards = 256
	// idRecentMin is how many entries a shard's recent map holds, at least,
	// before a merge: small shards are not copied at every insert.
	idRecentMin = 64
)

type idShard struct {
	base   []idEntry // sorted by hash, no hash twice
	recent map[uint64]uint64
	// dir is base's directory (reindex): bucket b's entries are
	// base[dir[b]:dir[b+1]]; shift takes a hash's bucket bits down.
	dir   []uint32
	shift uint8
}

type idEntry struct{ h, v uint64 }

func newIDIndex() *idIndex { return &idIndex{} }

func (x *idIndex) shard(h uint64) *idShard { return &x.shards[h>>56] }

// Len is the number of entries.
func (x *idIndex) Len() int { return x.n }

// find returns where h is, or would be, in a shard's base: the directory
// gives the few entries h's bucket holds, searched in two to four cache
// lines.
func (sh *idShard) find(h uint64) (int, bool) {
	if len(sh.base) == 0 {
		return 0, false
	}
	b := (h << 8) >> sh.shift
	lo, hi := int(sh.dir[b]), int(sh.dir[b+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if sh.base[m].h < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(sh.base) && sh.base[lo].h == h
}

// reindex rebuilds a shard's directory after its base changed. Bucket b
// holds the entries whose hash, below the shard's byte, starts with b's
// bits: hashes are uniform, and 2^k buckets for 2^(k+3) to 2^(k+4) entries
// hold 8 to 16 each, so the directory takes under a byte an entry.
func (sh *idShard) reindex() {
	n := len(sh.base)
	k := max(bits.Len(uint(n))-4, 0)
	size := 1<<k + 1
	if cap(sh.dir) < size {
		sh.dir = make([]uint32, size)
	}
	sh.dir = sh.dir[:size]
	sh.shift = uint8(64 - k)
	j := 0
	for b := range 1 << k {
		for j < n && (sh.base[j].h<<8)>>sh.shift < uint64(b) {
			j++
		}
		sh.dir[b] = uint32(j)
	}
	sh.dir[1<<k] = uint32(n)
}

// get returns the value of h.
func (x *idIndex) get(h uint64) (uint64, bool) {
	sh := x.shard(h)
	if v, ok := sh.recent[h]; ok {
		return v, true
	}
	if i, ok := sh.find(h); ok {
		return sh.base[i].v, true
	}
	return 0, false
}

// set gives h the value v, adding h when absent.
func (x *idIndex) set(h, v uint64) {
	sh := x.shard(h)
	if _, ok := sh.recent[h]; ok {
		sh.recent[h] = v
		return
	}
	if i, ok := sh.find(h); ok {
		sh.base[i].v = v
		return
	}
	x.insert(sh, h, v)
}

// add adds h with the value v, unless h is there already: then it changes
// nothing and returns false.
func (x *idIndex) add(h, v uint64) bool {
	sh := x.shard(h)
	if _, ok := sh.recent[h]; ok {
		return false
	}
	if _, ok := sh.find(h); ok {
		return false
	}
	x.insert(sh, h, v)
	return true
}

// insert adds h, known absent, to its shard's recent entries.
func (x *idIndex) insert(sh *idShard, h, v uint64) {
	if sh.recent == nil {
		sh.recent = make(map[uint64]uint64)
	}
	sh.recent[h] = v
	x.n++
	if !x.held && len(sh.recent) > recentMax(len(sh.base)) {
		x.merge(sh)
	}
}

// recentMax is how many recent entries a shard of n merged ones holds
// before a merge.
func recentMax(n int) int { return max(idRecentMin, n/8) }

// hold defers merges until release: what is added meanwhile can be removed
// from a map. The recent maps then outgrow their bound by at most what the
// held batch adds (a request's items, ItemsPerRequestMax).
func (x *idIndex) hold() { x.held = true }

// release ends a hold and merges the shards it let outgrow their bound: a
// ledger whose requests are all atomic would otherwise never merge.
func (x *idIndex) release() {
	x.held = false
	for s := range x.shards {
		if sh := &x.shards[s]; len(sh.recent) > recentMax(len(sh.base)) {
			x.merge(sh)
		}
	}
}

// remove takes h out (the undo of an add). An add undone is in its
// shard's recent map when merges were held since (hold); from base, the
// removal shifts the shard's array.
func (x *idIndex) remove(h uint64) {
	sh := x.shard(h)
	if _, ok := sh.recent[h]; ok {
		delete(sh.recent, h)
		x.n--
		return
	}
	if i, ok := sh.find(h); ok {
		sh.base = slices.Delete(sh.base, i, i+1)
		sh.reindex()
		x.n--
	}
}

// sortedRecent appends a shard's recent entries to buf, in hash order.
func (sh *idShard) sortedRecent(buf []idEntry) []idEntry {
	for h, v := range sh.recent {
		buf = append(buf, idEntry{h, v})
	}
	slices.SortFunc(buf, byHash)
	return buf
}

// mergeSorted calls fn with the entries of a and b, both in hash order and
// without a hash in common, in hash order; it stops when fn returns false,
// and says whether it went to the end.
func mergeSorted(a, b []idEntry, fn func(idEntry) bool) bool {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var e idEntry
		if j == len(b) || i < len(a) && a[i].h < b[j].h {
			e, i = a[i], i+1
		} else {
			e, j = b[j], j+1
		}
		if !fn(e) {
			return false
		}
	}
	return true
}

// merge moves a shard's recent entries into its base.
func (x *idIndex) merge(sh *idShard) {
	add := sh.sortedRecent(x.scratch[:0])
	clear(sh.recent)
	x.scratch = add[:0]
	need := len(sh.base) + len(add)
	if need > cap(sh.base) {
		// A quarter to spare, so that every other merge is in place; the
		// merge itself fills the new array, in one pass.
		grown := make([]idEntry, 0, need+need/4)
		mergeSorted(sh.base, add, func(e idEntry) bool { grown = append(grown, e); return true })
		sh.base = grown
	} else {
		// From the back, in place: base's entries move up, at most by
		// len(add), into room not yet read.
		i, j := len(sh.base)-1, len(add)-1
		sh.base = sh.base[:need]
		for k := need - 1; j >= 0; k-- {
			if i >= 0 && sh.base[i].h > add[j].h {
				sh.base[k], i = sh.base[i], i-1
			} else {
				sh.base[k], j = add[j], j-1
			}
		}
	}
	sh.reindex()
}

func byHash(a, b idEntry) int { return cmp.Compare(a.h, b.h) }

// each calls fn for every entry in ascending hash order, and stops when fn
// returns false. It changes nothing (a snapshot may be encoded while
// nothing else runs on the state, but never merges it).
func (x *idIndex) each(fn func(h, v uint64) bool) {
	var add []idEntry
	for s := range x.shards {
		sh := &x.shards[s]
		add = sh.sortedRecent(add[:0])
		if !mergeSorted(sh.base, add, func(e idEntry) bool { return fn(e.h, e.v) }) {
			return
		}
	}
}

// idIndexLoader builds an index from entries in any order: ascending hash
// order (what each gives, and what snapshots hold) appends, any other sorts
// the shards at the end.
type idIndexLoader struct {
	x      *idIndex
	last   uint64
	sorted bool
}

func newIDIndexLoader(n int) *idIndexLoader {
	x := newIDIndex()
	if per := n / idShards; per > 0 {
		// Hashes spread evenly over the shards: an eighth to spare covers
		// the variation at every size where preallocating matters.
		per += per/8 + 16
		for s := range x.shards {
			x.shards[s].base = make([]idEntry, 0, per)
		}
	}
	return &idIndexLoader{x: x, sorted: true}
}

func (l *idIndexLoader) add(h, v uint64) {
	if l.x.n > 0 && h <= l.last {
		l.sorted = false
	}
	l.last = h
	sh := l.x.shard(h)
	sh.base = append(sh.base, idEntry{h, v})
	l.x.n++
}

// done returns the index, or false when a hash came twice.
func (l *idIndexLoader) done() (*idIndex, bool) {
	for s := range l.x.shards {
		base := l.x.shards[s].base
		if !l.sorted {
			slices.SortFunc(base, byHash)
		}
		for i := 1; i < len(base); i++ {
			if base[i].h == base[i-1].h {
				return nil, false
			}
		}
		l.x.shards[s].reindex()
	}
	return l.x, true
}
