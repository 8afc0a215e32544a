package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// readReport is a report of a run with readers and lag samples.
func readReport() Report {
	return Report{
		CommandLine: "ledgerbench -readers 2",
		Config:      Config{Addr: "h:1", Ledger: "l", Readers: 2, ReadKind: ReadKindBoth, LagEvery: 100 * time.Millisecond},
		Reads: []ReadSummary{
			{Kind: "GetBalances", Readers: 1, Calls: 1000, QueriesPerSecond: 500,
				LatencyMs: LatencySummary{Count: 1000, P50: 0.5, P99: 1.25, P999: 2, Max: 3}},
			{Kind: "ListStatement", Readers: 1, Calls: 10, QueriesPerSecond: 5, Errors: 2,
				ErrorCodes: map[string]int64{"Unavailable": 2}, ErrorSample: "down"},
		},
		Lag: &LagReport{EveryMs: 100, Samples: 20, Meaning: LagMeaning, Projections: []ProjectionLag{
			{Projection: "balances", Samples: 20, LagMsP50: 12, LagMsP99: 80.5, LagMsMax: 90,
				LagPositionsP50: 800, LagPositionsP99: 5000, LagPositionsMax: 6000},
		}},
		PositionMax: 42,
		CatchUpMs:   15,
		CatchUp: []ProjectionCatchUp{{Projection: "balances", Position: 42, CatchUpMs: 7.5},
			{Projection: "movements", Position: 42, CatchUpMs: 15}},
		Pass: true,
	}
}

// costReport is a report of a run with CPU figures and a naive baseline.
func costReport() Report {
	window := func(seconds float64, ledgerd, pg float64) *CPUWindow {
		return &CPUWindow{Seconds: seconds, Transfers: 1000, TotalUsPerTransfer: ledgerd + pg + 5, Processes: []ProcessCPU{
			{Name: procLedgerd, PID: 10, UsPerTransfer: ledgerd, Cores: 0.5},
			{Name: procPostgres, PID: 20, UsPerTransfer: pg, Cores: 0.75},
			{Name: procBench, UsPerTransfer: 5, Cores: 0.1}}}
	}
	return Report{
		Config:             Config{Addr: "h:1", Ledger: "l"},
		TransfersPerSecond: 30000, SustainedPerSecond: 12000, SustainedSeconds: 2.5,
		CPU: &CPUReport{ClockTicksPerSecond: 100, ClockTicksSource: "AT_CLKTCK", Meaning: CPUMeaning,
			Acked: window(1, 80, 86), Current: window(2.5, 90, 100)},
		Naive: &NaiveReport{Database: "ledgerbench_naive", Committed: 3000, Concurrency: 64, Conns: 64, DurationSeconds: 1.5,
			TransfersPerSecond: 2000, LatencyMs: LatencySummary{P50: 30, P99: 60}, CPU: window(1.5, 1, 170),
			RatioAcked: 15, RatioSustained: 6},
		Pass: true,
	}
}

func TestWriteText(t *testing.T) {
	tests := []struct {
		name      string
		report    Report
		want      []string
		wantNever []string
	}{
		{"with reads and lag", readReport(), []string{
			"readers=2 read-kind=both lag-every=100ms\n",
			"reads:       GetBalances: 1 readers, 1000 calls, 500 qps, ms p50 0.500  p99 1.250  p999 2.000  max 3.000, 0 errors\n",
			"reads:       ListStatement: 1 readers, 10 calls, 5 qps, ms p50 0.000  p99 0.000  p999 0.000  max 0.000, 2 errors (Unavailable=2; down)\n",
			"lag:         GetProjectionStatus every 100 ms while writing: 20 samples, 0 errors\n",
			"  balances:  lag ms p50 12.0  p99 80.5  max 90.0; lag positions p50 800  p99 5000  max 6000 (20 samples)\n",
			"  meaning:   " + lagMeaningShort + "\n",
			"catch-up:    15.0 ms after the last ack (slowest projection)\n",
			"  each:      balances 7.5 ms, movements 15.0 ms\n",
			"RESULT PASS\n",
		}, nil},
		{"with cpu and naive", costReport(), []string{
			"throughput:  30000 transfers/s acknowledged",
			"sustained:   12000 transfers/s with every read model current (2.500 s from the first transfer sent",
			"cpu:         µs per transfer, from /proc (100 clock ticks/s, AT_CLKTCK)\n",
			"  note:      no -nats-pid: an embedded NATS server runs inside ledgerd and counts in its figure\n",
			"  to last ack: ledgerd 80.0 (0.50 cores) postgres 86.0 (0.75 cores) ledgerbench 5.0 (0.10 cores); total 171.0 µs over 1.000 s\n",
			"  read models current: ledgerd 90.0 (0.50 cores) postgres 100.0 (0.75 cores) ledgerbench 5.0 (0.10 cores); total 195.0 µs over 2.500 s\n",
			"naive:       2000 transfers/s (3000 committed in 1.500 s, 64 workers on 64 connections, database ledgerbench_naive), " +
				"latency ms p50 30.000  p99 60.000\n",
			"  cpu:       postgres 170.0 µs per transfer; total 176.0\n",
			"  ratio:     ledger/naive 15.00x acknowledged, 6.00x with every read model current\n",
		}, []string{"error:"}},
		{"write only", Report{Config: Config{Addr: "h:1", Ledger: "l"}, CatchUpMs: 3}, []string{
			"readers=0 read-kind= lag-every=0s\n",
			"catch-up:    3.0 ms after the last ack (slowest projection)\n",
			"RESULT FAIL\n",
		}, []string{"reads:", "lag:", "each:", "sustained:", "cpu:", "naive:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tt.report.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("WriteText lacks %q; got:\n%s", w, got)
				}
			}
			for _, w := range tt.wantNever {
				if strings.Contains(got, w) {
					t.Errorf("WriteText has %q; got:\n%s", w, got)
				}
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	if err := readReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Config struct {
			Readers    int    `json:"readers"`
			ReadKind   string `json:"read_kind"`
			LagEveryNs int64  `json:"lag_every_ns"`
		} `json:"config"`
		Reads []struct {
			Kind             string  `json:"kind"`
			QueriesPerSecond float64 `json:"queries_per_second"`
			LatencyMs        struct {
				P99 float64 `json:"p99"`
			} `json:"latency_ms"`
			Errors int64 `json:"errors"`
		} `json:"reads"`
		Lag struct {
			Projections []struct {
				Projection      string  `json:"projection"`
				LagMsP99        float64 `json:"lag_ms_p99"`
				LagPositionsP99 uint64  `json:"lag_positions_p99"`
			} `json:"projections"`
			Meaning string `json:"meaning"`
		} `json:"lag"`
		CatchUp []struct {
			Projection string  `json:"projection"`
			CatchUpMs  float64 `json:"catch_up_ms"`
		} `json:"catch_up"`
	}
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, b.String())
	}
	c := got.Config
	if c.Readers != 2 || c.ReadKind != ReadKindBoth || c.LagEveryNs != int64(100*time.Millisecond) {
		t.Errorf("config = %+v, want 2 readers, both, 100 ms", c)
	}
	if len(got.Reads) != 2 || got.Reads[0].Kind != "GetBalances" || got.Reads[0].QueriesPerSecond != 500 ||
		got.Reads[0].LatencyMs.P99 != 1.25 || got.Reads[1].Errors != 2 {
		t.Errorf("reads = %+v", got.Reads)
	}
	if len(got.Lag.Projections) != 1 || got.Lag.Projections[0].LagMsP99 != 80.5 ||
		got.Lag.Projections[0].LagPositionsP99 != 5000 || got.Lag.Meaning != LagMeaning {
		t.Errorf("lag = %+v", got.Lag)
	}
	if len(got.CatchUp) != 2 || got.CatchUp[1].Projection != "movements" || got.CatchUp[1].CatchUpMs != 15 {
		t.Errorf("catch_up = %+v", got.CatchUp)
	}
}

func TestReadsAnswered(t *testing.T) {
	ok := []ReadSummary{{Kind: "GetBalances", Calls: 3}, {Kind: "ListStatement", Calls: 0}}
	failed := []ReadSummary{{Kind: "GetBalances", Calls: 3, Errors: 1}}
	tests := []struct {
		name       string
		reads      []ReadSummary
		lag        *LagReport
		want       bool
		wantDetail string
	}{
		{"reads without errors", ok, nil, true, "GetBalances 3 calls, 0 errors; ListStatement 0 calls, 0 errors"},
		{"a read failed", failed, nil, false, "GetBalances 3 calls, 1 errors"},
		{"lag only", nil, &LagReport{Samples: 5}, true, "GetProjectionStatus 5 samples, 0 errors"},
		{"a lag sample failed", ok, &LagReport{Samples: 5, Errors: 1}, false,
			"GetBalances 3 calls, 0 errors; ListStatement 0 calls, 0 errors; GetProjectionStatus 5 samples, 1 errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := readsAnswered(tt.reads, tt.lag)
			if got != tt.want || detail != tt.wantDetail {
				t.Errorf("readsAnswered = %t, %q; want %t, %q", got, detail, tt.want, tt.wantDetail)
			}
		})
	}
}
