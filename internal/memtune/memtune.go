// Package memtune bounds the collector's slack by what is live.
//
// ledgerd runs Go's collector at GOGC=200 (cmd/ledgerd): the heap grows to
// three times what is live before a collection, which saves CPU while the
// live heap is small. At a million accounts and millions of transfers the
// live heap passes a gigabyte, and three times that is most of a small
// machine's memory (a 7.4 GiB peak at a million accounts and 10M
// transfers, BENCHMARKS.md, "Scale"). After every collection, Start sets
// Go's soft memory limit to the memory that is not heap, plus the live
// heap, plus a headroom: twice the live heap up to HeadroomCap (GOGC=200's
// slack), then HeadroomCap until a quarter of the live heap is more
// (GOGC=25). The collector then runs when either GOGC's goal or the limit
// is reached, whichever comes first.
//
// The slack beyond the cap was the live heap itself (GOGC=100) until
// session 28: a tighter one had cost ledgerd half as much CPU again a
// transfer while the collector marked a map of pointers per account
// (docs/perf.md, "Session 13"). The writer's accounts, its id index and
// the statement lines' heads are now arrays the collector marks little of,
// and a 256 MiB slack held a 1M-account, 10M-transfer load's peak to 1,148
// MiB against 1,672 for about 4 % more of ledgerd's CPU (docs/perf.md,
// "Session 28").
//
// In a cgroup with a memory limit (a container's), the limit set never
// exceeds Ceiling of it: the kernel kills a process over its cgroup's
// limit, and the live heap's slack alone would take ledgerd there at a load's
// peak (1.8 GiB at a million accounts, docs/perf.md "Session 27").
package memtune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Defaults of the headroom.
const (
	// HeadroomCap is where the headroom stops being twice the live heap.
	HeadroomCap = 256 << 20
	// headroomFloor keeps a limit above a tiny live heap from making the
	// collector run on every few allocations.
	headroomFloor = 64 << 20
)

// metric names read after each collection.
var names = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/unused:bytes",
}

// Headroom is how much the heap may grow past live bytes before the limit
// makes the collector run: 2× live up to HeadroomCap, then the larger of
// HeadroomCap and a quarter of live.
func Headroom(live uint64) uint64 {
	h := max(2*live, headroomFloor)
	if h > HeadroomCap {
		h = max(HeadroomCap, live/4)
	}
	return h
}

// Tuner sets the soft memory limit after each collection; Stop ends it.
type Tuner struct {
	// mu makes a tune and Stop one after the other: a tune past its check
	// of stopped would otherwise set a limit after Stop lifted it.
	mu      sync.Mutex
	stopped bool
	// Limit is the last limit set (for tests and metrics).
	limit   atomic.Int64
	samples []metrics.Sample
	// ceiling bounds every limit set; 0: none.
	ceiling uint64
}

// Start begins tuning after every collection and returns the tuner; no
// limit it sets exceeds ceiling (0: none), which holds from the start. The
// caller decides whether to (cmd/ledgerd: not when the environment sets
// GOMEMLIMIT, which an operator set for a reason).
func Start(ceiling uint64) *Tuner {
	t := &Tuner{samples: make([]metrics.Sample, len(names)), ceiling: min(ceiling, math.MaxInt64)}
	for i, n := range names {
		t.samples[i].Name = n
	}
	if t.ceiling > 0 {
		debug.SetMemoryLimit(int64(t.ceiling))
		t.limit.Store(int64(t.ceiling))
	}
	t.arm()
	return t
}

// Stop stops tuning and lifts the limit.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	debug.SetMemoryLimit(math.MaxInt64)
}

// Limit is the soft memory limit last set: the ceiling, or 0 without one,
// before the first collection.
func (t *Tuner) Limit() int64 { return t.limit.Load() }

// sentinel is an object the collector frees at every cycle: its finalizer
// runs after that cycle, tunes and arms the next one. A finalizer runs on
// the runtime's single finalizer goroutine, so tune never runs twice at once.
type sentinel struct{ _ [16]byte }

func (t *Tuner) arm() {
	s := &sentinel{}
	runtime.SetFinalizer(s, func(*sentinel) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.stopped {
			return
		}
		t.tune()
		t.arm()
	})
}

func (t *Tuner) tune() {
	metrics.Read(t.samples)
	v := make([]uint64, len(t.samples))
	for i, s := range t.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // a runtime without the metric: leave the limit alone
		}
		v[i] = s.Value.Uint64()
	}
	live, total, objects, free, released, unused := v[0], v[1], v[2], v[3], v[4], v[5]
	// What the runtime holds besides the heap (stacks, its own structures):
	// the limit counts it too.
	heap := objects + free + released + unused
	other := uint64(0)
	if total > heap {
		other = total - heap
	}
	limit := other + live + Headroom(live)
	if t.ceiling > 0 {
		limit = min(limit, t.ceiling)
	}
	if limit > math.MaxInt64 {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(int64(limit))
	t.limit.Store(int64(limit))
}
