package memtune_test

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/memtune"
)

func TestHeadroom(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ live, want uint64 }{
		{0, 64 * mib},           // the floor
		{10 * mib, 64 * mib},    // still the floor
		{100 * mib, 200 * mib},  // GOGC=200's slack
		{128 * mib, 256 * mib},  // up to the cap
		{200 * mib, 256 * mib},  // capped
		{300 * mib, 256 * mib},  // still the cap
		{1024 * mib, 256 * mib}, // a quarter of live is no more
		{1028 * mib, 257 * mib}, // then a quarter of live
		{2048 * mib, 512 * mib},
	} {
		if got := memtune.Headroom(c.live); got != c.want {
			t.Errorf("Headroom(%d MiB) = %d MiB, want %d MiB", c.live/mib, got/mib, c.want/mib)
		}
	}
}

// TestLimitFollowsTheLiveHeap: after a collection the soft limit is the live
// heap plus its headroom (and what is not heap), and it grows with the
// live heap; Stop lifts it.
func TestLimitFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	tu := memtune.Start(0)
	defer tu.Stop()
	// settled collects until the finalizer has tuned after the last
	// collection (an earlier cycle's may run late) and returns the limit:
	// the live heap, its headroom, and what the runtime holds besides the
	// heap (a few MiB here).
	settled := func() int64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
			got, live := tu.Limit(), liveHeap()
			want := live + memtune.Headroom(live)
			if got != 0 && uint64(got) >= want && uint64(got) <= want+64<<20 {
				if set := debug.SetMemoryLimit(-1); set != got {
					t.Fatalf("runtime's limit %d, tuner's %d", set, got)
				}
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("limit %d MiB, want %d MiB (live %d MiB) and at most 64 MiB more", got>>20, want>>20, live>>20)
			}
		}
	}
	small := settled()
	// 400 MiB more live: past the cap, the headroom stays the cap.
	ballast := make([][]byte, 400)
	for i := range ballast {
		ballast[i] = make([]byte, 1<<20)
	}
	big := settled()
	if big < small+400<<20 {
		t.Fatalf("limit %d MiB with 400 MiB more live, %d MiB before", big>>20, small>>20)
	}
	runtime.KeepAlive(ballast)
	tu.Stop()
	// A tune that was due must not set a limit after Stop lifted it.
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d after Stop", got)
	}
}

// liveHeap is the heap the last collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestCeilingBindsTheLimit: with a ceiling (a cgroup's limit, less its
// slack) the limit is the ceiling from the start, and no tune after a
// collection sets it higher, though the live heap's headroom alone is more.
func TestCeilingBindsTheLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const ceiling = 48 << 20 // under the headroom's floor (64 MiB) over any live heap
	tu := memtune.Start(ceiling)
	defer tu.Stop()
	if got := debug.SetMemoryLimit(-1); got != ceiling {
		t.Fatalf("limit %d at the start, want the ceiling %d", got, ceiling)
	}
	// Tunes run after collections, on the finalizer goroutine: each round
	// gives one the time to run, and none may lift the limit.
	for range 20 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if got, set := tu.Limit(), debug.SetMemoryLimit(-1); got != ceiling || set != ceiling {
			t.Fatalf("tuner's limit %d, runtime's %d after a collection; want the ceiling %d", got, set, ceiling)
		}
	}
}
