package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSetCollector: the cgroup's limit bounds Go's soft limit whether or
// not GOGC is set, and GOMEMLIMIT leaves both to the runtime.
func TestSetCollector(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	const gib = 1 << 30
	const ceiling = gib - gib/10
	inGiB := func() (uint64, bool) { return gib, true }
	none := func() (uint64, bool) { return 0, false }
	for _, c := range []struct {
		name        string
		env         map[string]string
		limit       func() (uint64, bool)
		wantCeiling uint64
		wantSoft    int64 // the runtime's soft limit right after (at most, with a tuner)
		wantGC      int
		wantTuner   bool
	}{
		{"no cgroup limit", nil, none, 0, math.MaxInt64, gcPercentDefault, true},
		{"a cgroup limit", nil, inGiB, ceiling, ceiling, gcPercentDefault, true},
		{"GOGC set, a cgroup limit", map[string]string{"GOGC": "50"}, inGiB, ceiling, ceiling, 100, false},
		{"GOGC set, no cgroup limit", map[string]string{"GOGC": "50"}, none, 0, math.MaxInt64, 100, false},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "2GiB"}, inGiB, 0, math.MaxInt64, gcPercentDefault, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			limit, got, tuner := setCollector(func(k string) string { return c.env[k] }, c.limit)
			if tuner != nil {
				defer tuner.Stop()
			}
			// What the environment's GOGC and GOMEMLIMIT set, the runtime
			// read at its start: the test stands for them with 100 and no
			// limit. A tuner may have tuned after a collection since: then
			// the soft limit is at most what it started with.
			soft := debug.SetMemoryLimit(-1)
			if got != c.wantCeiling || soft > c.wantSoft || tuner == nil && soft != c.wantSoft {
				t.Errorf("ceiling %d, runtime's soft limit %d; want %d, %d", got, soft, c.wantCeiling, c.wantSoft)
			}
			if gc := debug.SetGCPercent(100); gc != c.wantGC {
				t.Errorf("GOGC %d, want %d", gc, c.wantGC)
			}
			if (tuner != nil) != c.wantTuner {
				t.Errorf("tuner started: %v, want %v", tuner != nil, c.wantTuner)
			}
			if want, _ := c.limit(); c.env["GOMEMLIMIT"] == "" && limit != want {
				t.Errorf("cgroup limit %d, want %d", limit, want)
			}
		})
	}
}
