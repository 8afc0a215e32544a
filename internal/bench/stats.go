package bench

import (
	"cmp"
	"slices"
	"time"
)

// LatencySummary describes the call latencies of the measured phase, in
// milliseconds. Percentiles are exact: every latency is kept and sorted.
type LatencySummary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// summarize sorts latencies in place and summarizes them.
func summarize(latencies []time.Duration) LatencySummary {
	if len(latencies) == 0 {
		return LatencySummary{}
	}
	slices.Sort(latencies)
	var total time.Duration
	for _, d := range latencies {
		total += d
	}
	return LatencySummary{
		Count: len(latencies),
		Mean:  ms(total / time.Duration(len(latencies))),
		P50:   ms(percentile(latencies, 500)),
		P99:   ms(percentile(latencies, 990)),
		P999:  ms(percentile(latencies, 999)),
		Max:   ms(latencies[len(latencies)-1]),
	}
}

// percentile returns the nearest-rank percentile of sorted: the smallest
// value with at least perMille/1000 of the values at or below it. Per mille
// in integers keeps p99.9 exact (0.999 has no exact float). Empty gives 0.
func percentile[T cmp.Ordered](sorted []T, perMille int) T {
	n := len(sorted)
	if n == 0 {
		var zero T
		return zero
	}
	rank := (perMille*n + 999) / 1000 // ceil(perMille*n/1000)
	return sorted[min(max(rank, 1), n)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
