package bench

import (
	"context"
	"math"
	"slices"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

const (
	// lagCallTimeout bounds one GetProjectionStatus.
	lagCallTimeout = 5 * time.Second
	// lagSamplesMax bounds the samples kept per projection (16 bytes each):
	// at the fastest -lag-every, over a quarter of an hour.
	lagSamplesMax = 1 << 20
	// projectionsMax bounds the projections followed per ledger, as the
	// server does; others are left out.
	projectionsMax = 16
)

// LagMeaning says what the sampled lag is; the report carries it.
const LagMeaning = "lag_seconds is the recorded time of the ledger's head event minus that of the projection's " +
	"checkpoint event, both stamped by the writer (0 when caught up): how much of the log's time the projection " +
	"had still to apply when sampled. It is not the wall-clock age of the read model: it moves only when an event " +
	"is written or the projection commits a batch, so a projection stalled while writes pause shows a constant " +
	"lag, not a growing one. lag_positions is head minus checkpoint: events written but not yet applied."

// lagSeries is one projection's samples, in arrival order.
type lagSeries struct {
	seconds   []time.Duration
	positions []uint64
}

// lagSampler asks for the projections' status every cfg.LagEvery. Its
// fields are owned by its goroutine while it runs and read once it stopped.
type lagSampler struct {
	client ledgerv1.QueryServiceClient
	cfg    *Config

	// samples were answered; errors failed (errorSample is the first).
	samples     int
	errors      int64
	errorSample string
	// dropped counts projection samples left out past lagSamplesMax or
	// projectionsMax.
	dropped int64
	series  map[string]*lagSeries
}

func newLagSampler(cfg *Config, client ledgerv1.QueryServiceClient) *lagSampler {
	return &lagSampler{client: client, cfg: cfg, series: map[string]*lagSeries{}}
}

// run samples at once and then every cfg.LagEvery until ctx ends; ticks
// missed while a call is slow are skipped. A call cut short by ctx's end is
// not counted.
func (s *lagSampler) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.LagEvery)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, lagCallTimeout)
		resp, err := s.client.GetProjectionStatus(cctx, &ledgerv1.GetProjectionStatusRequest{Ledger: s.cfg.Ledger})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.errors++
			if s.errorSample == "" {
				s.errorSample = err.Error()
			}
		} else {
			s.add(resp.GetProjections())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// add records one answer: each projection's lag, by name.
func (s *lagSampler) add(projections []*ledgerv1.ProjectionStatus) {
	s.samples++
	for _, p := range projections {
		ser := s.series[p.GetName()]
		if ser == nil {
			if len(s.series) >= projectionsMax {
				s.dropped++
				continue
			}
			ser = &lagSeries{}
			s.series[p.GetName()] = ser
		}
		if len(ser.seconds) >= lagSamplesMax {
			s.dropped++
			continue
		}
		ser.seconds = append(ser.seconds, secondsDuration(p.GetLagSeconds()))
		ser.positions = append(ser.positions, p.GetLagPositions())
	}
}

// secondsDuration converts the server's float seconds to a Duration,
// rounded to the nanosecond; a negative or NaN value (the server sends
// neither) counts as 0.
func secondsDuration(s float64) time.Duration {
	if !(s > 0) {
		return 0
	}
	return time.Duration(math.Round(s * float64(time.Second)))
}

// LagReport summarizes the projections' lag sampled while the measured
// phase wrote.
type LagReport struct {
	EveryMs float64 `json:"every_ms"`
	// Samples is how many GetProjectionStatus calls were answered.
	Samples     int    `json:"samples"`
	Errors      int64  `json:"errors"`
	ErrorSample string `json:"error_sample,omitempty"`
	// Dropped counts projection samples past the bounds, left out.
	Dropped     int64           `json:"dropped,omitempty"`
	Projections []ProjectionLag `json:"projections"`
	Meaning     string          `json:"meaning"`
}

// ProjectionLag is one projection's sampled lag: lag_seconds in
// milliseconds, and lag_positions.
type ProjectionLag struct {
	Projection      string  `json:"projection"`
	Samples         int     `json:"samples"`
	LagMsP50        float64 `json:"lag_ms_p50"`
	LagMsP99        float64 `json:"lag_ms_p99"`
	LagMsMax        float64 `json:"lag_ms_max"`
	LagPositionsP50 uint64  `json:"lag_positions_p50"`
	LagPositionsP99 uint64  `json:"lag_positions_p99"`
	LagPositionsMax uint64  `json:"lag_positions_max"`
}

// report summarizes the samples, projections by name. It sorts them in place.
func (s *lagSampler) report() LagReport {
	r := LagReport{EveryMs: ms(s.cfg.LagEvery), Samples: s.samples, Errors: s.errors, ErrorSample: s.errorSample,
		Dropped: s.dropped, Projections: []ProjectionLag{}, Meaning: LagMeaning}
	for _, name := range sortedKeys(s.series) {
		r.Projections = append(r.Projections, summarizeLag(name, s.series[name]))
	}
	return r
}

// summarizeLag sorts ser in place and gives its percentiles (nearest rank,
// as for latencies) and maximum.
func summarizeLag(name string, ser *lagSeries) ProjectionLag {
	out := ProjectionLag{Projection: name, Samples: len(ser.seconds)}
	if len(ser.seconds) == 0 {
		return out
	}
	slices.Sort(ser.seconds)
	slices.Sort(ser.positions)
	out.LagMsP50, out.LagMsP99 = ms(percentile(ser.seconds, 500)), ms(percentile(ser.seconds, 990))
	out.LagMsMax = ms(ser.seconds[len(ser.seconds)-1])
	out.LagPositionsP50, out.LagPositionsP99 = percentile(ser.positions, 500), percentile(ser.positions, 990)
	out.LagPositionsMax = ser.positions[len(ser.positions)-1]
	return out
}
