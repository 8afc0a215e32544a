package bench

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

func projStatus(name string, position, head uint64, lagSeconds float64) *ledgerv1.ProjectionStatus {
	return &ledgerv1.ProjectionStatus{Ledger: "l", Name: name, Position: position, Head: head,
		LagPositions: head - position, LagSeconds: lagSeconds}
}

func TestLagReport(t *testing.T) {
	s := newLagSampler(&Config{LagEvery: 100 * time.Millisecond}, nil)
	// 100 samples: transfers lags i ms and 10*i positions, i = 100..1 in
	// reverse order so the sort is seen; balances is caught up throughout
	// but for one sample; movements appears at sample 50.
	for i := 100; i >= 1; i-- {
		ps := []*ledgerv1.ProjectionStatus{projStatus("transfers", 0, uint64(10*i), float64(i)/1000)}
		if i == 7 {
			ps = append(ps, projStatus("balances", 0, 40, 0.25))
		} else {
			ps = append(ps, projStatus("balances", 5, 5, 0))
		}
		if i <= 50 {
			ps = append(ps, projStatus("movements", 0, 3, 0.002))
		}
		s.add(ps)
	}
	got := s.report()
	want := LagReport{EveryMs: 100, Samples: 100, Meaning: LagMeaning, Projections: []ProjectionLag{
		{Projection: "balances", Samples: 100, LagMsP50: 0, LagMsP99: 0, LagMsMax: 250,
			LagPositionsP50: 0, LagPositionsP99: 0, LagPositionsMax: 40},
		{Projection: "movements", Samples: 50, LagMsP50: 2, LagMsP99: 2, LagMsMax: 2,
			LagPositionsP50: 3, LagPositionsP99: 3, LagPositionsMax: 3},
		{Projection: "transfers", Samples: 100, LagMsP50: 50, LagMsP99: 99, LagMsMax: 100,
			LagPositionsP50: 500, LagPositionsP99: 990, LagPositionsMax: 1000},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestLagSamplerBounds(t *testing.T) {
	t.Run("projections", func(t *testing.T) {
		s := newLagSampler(&Config{LagEvery: time.Millisecond}, nil)
		var ps []*ledgerv1.ProjectionStatus
		for i := range projectionsMax + 2 {
			ps = append(ps, projStatus("p"+strconv.Itoa(i), 0, 1, 0.001))
		}
		s.add(ps)
		s.add(ps)
		if got := s.report(); len(got.Projections) != projectionsMax || got.Dropped != 4 || got.Samples != 2 {
			t.Errorf("report: %d projections, %d dropped, %d samples; want %d, 4, 2",
				len(got.Projections), got.Dropped, got.Samples, projectionsMax)
		}
	})
	t.Run("samples", func(t *testing.T) {
		s := newLagSampler(&Config{LagEvery: time.Millisecond}, nil)
		ps := []*ledgerv1.ProjectionStatus{projStatus("balances", 0, 1, 0.001)}
		for range lagSamplesMax + 3 {
			s.add(ps)
		}
		got := s.report()
		if got.Projections[0].Samples != lagSamplesMax || got.Dropped != 3 || got.Samples != lagSamplesMax+3 {
			t.Errorf("report: %d kept, %d dropped, %d samples; want %d, 3, %d",
				got.Projections[0].Samples, got.Dropped, got.Samples, lagSamplesMax, lagSamplesMax+3)
		}
	})
}

func TestLagReportEmpty(t *testing.T) {
	got := newLagSampler(&Config{LagEvery: time.Second}, nil).report()
	want := LagReport{EveryMs: 1000, Projections: []ProjectionLag{}, Meaning: LagMeaning}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestSecondsDuration(t *testing.T) {
	tests := []struct {
		name string
		in   float64
		want time.Duration
	}{
		{"zero", 0, 0},
		{"microseconds", 0.000123, 123 * time.Microsecond},
		{"seconds", 1.5, 1500 * time.Millisecond},
		{"negative", -1, 0},
		{"nan", math.NaN(), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := secondsDuration(tt.in); got != tt.want {
				t.Errorf("secondsDuration(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCatchUp(t *testing.T) {
	c := newCatchUp(100)
	steps := []struct {
		name   string
		answer []*ledgerv1.ProjectionStatus
		after  time.Duration
		done   bool
		behind string
	}{
		{"no projections yet", nil, time.Millisecond, false, "no projections listed"},
		{"two behind", []*ledgerv1.ProjectionStatus{projStatus("balances", 90, 100, 0.01), projStatus("movements", 50, 100, 0.02)},
			2 * time.Millisecond, false, "balances at 90, movements at 50"},
		{"balances reached", []*ledgerv1.ProjectionStatus{projStatus("balances", 100, 100, 0), projStatus("movements", 99, 100, 0.001)},
			3 * time.Millisecond, false, "movements at 99"},
		{"all reached, balances keeps its first time", []*ledgerv1.ProjectionStatus{projStatus("balances", 120, 120, 0),
			projStatus("movements", 101, 120, 0.001)}, 4 * time.Millisecond, true, ""},
	}
	for _, s := range steps {
		if got := c.observe(s.answer, s.after); got != s.done || c.behind != s.behind {
			t.Fatalf("%s: observe = %t, behind %q; want %t, %q", s.name, got, c.behind, s.done, s.behind)
		}
	}
	want := []ProjectionCatchUp{{Projection: "balances", Position: 100, CatchUpMs: 3}, {Projection: "movements", Position: 101, CatchUpMs: 4}}
	if diff := cmp.Diff(want, c.reachedByName()); diff != "" {
		t.Errorf("reachedByName (-want +got):\n%s", diff)
	}
}
