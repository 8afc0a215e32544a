package supervise

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var errBoom = errors.New("boom")

// fakeClock is a clock each run moves on by the run's length, so that how
// long a run lasted is the test's choice, not the machine's.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// record runs tasks of the given lengths, each failing, under p (with
// the fake clock and no jitter unless p says), and returns the delays told
// to OnRestart. The last run ends the supervision by returning nil.
func record(t *testing.T, p Policy, runs []time.Duration) []time.Duration {
	t.Helper()
	clock := &fakeClock{now: time.Unix(0, 0)}
	p.Now = clock.Now
	if p.Rand == nil {
		p.Jitter = -1
	}
	var delays []time.Duration
	p.OnRestart = func(err error, d time.Duration) {
		if !errors.Is(err, errBoom) {
			t.Errorf("OnRestart got %v, want errBoom", err)
		}
		delays = append(delays, d)
	}
	i := 0
	Run(t.Context(), p, func(context.Context) error {
		clock.now = clock.now.Add(runs[i])
		i++
		if i == len(runs) {
			return nil
		}
		return errBoom
	})
	if i != len(runs) {
		t.Fatalf("ran %d times, want %d", i, len(runs))
	}
	return delays
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	p := Policy{Initial: time.Microsecond, Max: 5 * time.Microsecond, Healthy: time.Hour}
	got := record(t, p, make([]time.Duration, 7))
	want := []time.Duration{1, 2, 4, 5, 5, 5}
	for i := range want {
		want[i] *= time.Microsecond
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

func TestBackoffStartsOverAfterHealthyRun(t *testing.T) {
	p := Policy{Initial: time.Microsecond, Max: time.Millisecond, Healthy: time.Minute}
	us := time.Microsecond
	// Three quick failures, a run as long as Healthy, then two more quick
	// ones; one just short of Healthy does not reset.
	runs := []time.Duration{0, 0, 0, time.Minute, 0, time.Minute - 1, 0}
	got := record(t, p, runs)
	want := []time.Duration{1 * us, 2 * us, 4 * us, 1 * us, 2 * us, 4 * us}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

func TestJitterOnlyShortens(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rand   float64
		jitter float64
		want   time.Duration
	}{
		{"none drawn", 0, 0.5, 8 * time.Microsecond},
		{"most drawn", 0.999999, 0.5, 4 * time.Microsecond},
		{"half drawn", 0.5, 0.5, 6 * time.Microsecond},
		{"default jitter", 0.5, 0, 7200 * time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Initial: 8 * time.Microsecond, Max: 8 * time.Microsecond, Healthy: time.Hour,
				Jitter: tc.jitter, Rand: func() float64 { return tc.rand }}
			got := record(t, p, make([]time.Duration, 3))
			for i, d := range got {
				if d > p.Max || d < tc.want-time.Nanosecond || d > tc.want+time.Nanosecond {
					t.Errorf("delay %d: %v, want %v (never over Max %v)", i, d, tc.want, p.Max)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	p := Policy{}.withDefaults()
	if p.Initial != InitialDefault || p.Max != MaxDefault || p.Healthy != HealthyDefault || p.Jitter != JitterDefault {
		t.Errorf("defaults: %+v", p)
	}
	// A cap under the first delay is raised to it: the cap never makes a
	// delay shorter than asked.
	if p := (Policy{Initial: time.Second, Max: time.Millisecond}).withDefaults(); p.Max != time.Second {
		t.Errorf("Max %v under Initial %v, want Initial", p.Max, p.Initial)
	}
}

func TestStopsOnCancel(t *testing.T) {
	t.Run("while running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		told := 0
		p := Policy{OnRestart: func(error, time.Duration) { told++ }}
		runs := 0
		Run(ctx, p, func(ctx context.Context) error {
			runs++
			cancel()
			<-ctx.Done()
			return ctx.Err()
		})
		if runs != 1 || told != 0 {
			t.Errorf("ran %d times, OnRestart told %d times; want 1 and 0 (a stop is no failure)", runs, told)
		}
	})
	t.Run("while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		// An hour's back-off: Run returns only because of the cancel.
		p := Policy{Initial: time.Hour, OnRestart: func(error, time.Duration) { cancel() }}
		runs := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, p, func(context.Context) error { runs++; return errBoom })
		}()
		<-done
		if runs != 1 {
			t.Errorf("ran %d times, want 1", runs)
		}
	})
	t.Run("before starting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		Run(ctx, Policy{}, func(context.Context) error {
			t.Error("ran with ctx ended")
			return nil
		})
	})
}

func TestDoneStopsSupervision(t *testing.T) {
	runs := 0
	Run(t.Context(), Policy{}, func(context.Context) error { runs++; return nil })
	if runs != 1 {
		t.Errorf("ran %d times after a nil return, want 1", runs)
	}
}
