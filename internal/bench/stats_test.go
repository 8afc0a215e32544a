package bench

import (
	"testing"
	"time"
)

// upTo returns 1ms..n ms in a shuffled order, so that tests see the sort.
func upTo(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[(i*7919)%n] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		perMille int
		want     time.Duration
	}{
		{"empty", 0, 500, 0},
		{"one value p50", 1, 500, time.Millisecond},
		{"one value p999", 1, 999, time.Millisecond},
		{"ten p50", 10, 500, 5 * time.Millisecond},
		{"ten p99 rounds up", 10, 990, 10 * time.Millisecond},
		{"hundred p50", 100, 500, 50 * time.Millisecond},
		{"hundred p99", 100, 990, 99 * time.Millisecond},
		{"hundred p999", 100, 999, 100 * time.Millisecond},
		{"thousand p999", 1000, 999, 999 * time.Millisecond},
		{"thousand p100", 1000, 1000, 1000 * time.Millisecond},
		{"thousand p0 is the min", 1000, 0, time.Millisecond},
		{"1001 p50", 1001, 500, 501 * time.Millisecond},
		{"1001 p999", 1001, 999, 1000 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sorted := upTo(tt.n)
			summarize(sorted) // sorts
			if got := percentile(sorted, tt.perMille); got != tt.want {
				t.Errorf("percentile(1..%d ms, %d‰) = %v, want %v", tt.n, tt.perMille, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want LatencySummary
	}{
		{"empty", nil, LatencySummary{}},
		{"one", []time.Duration{3 * time.Millisecond}, LatencySummary{Count: 1, Mean: 3, P50: 3, P99: 3, P999: 3, Max: 3}},
		{"thousand", upTo(1000), LatencySummary{Count: 1000, Mean: 500.5, P50: 500, P99: 990, P999: 999, Max: 1000}},
		{"sub-millisecond", []time.Duration{250 * time.Microsecond, 750 * time.Microsecond},
			LatencySummary{Count: 2, Mean: 0.5, P50: 0.25, P99: 0.75, P999: 0.75, Max: 0.75}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}
