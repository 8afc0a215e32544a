package bench

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReaderKinds(t *testing.T) {
	tests := []struct {
		name    string
		readers int
		kind    string
		want    []readKind
	}{
		{"none", 0, ReadKindBoth, []readKind{}},
		{"both, one reader asks balances", 1, ReadKindBoth, []readKind{readBalances}},
		{"both halves", 4, ReadKindBoth, []readKind{readBalances, readStatement, readBalances, readStatement}},
		{"both, odd count", 3, ReadKindBoth, []readKind{readBalances, readStatement, readBalances}},
		{"balances", 2, ReadKindBalances, []readKind{readBalances, readBalances}},
		{"statement", 2, ReadKindStatement, []readKind{readStatement, readStatement}},
		{"health", 2, ReadKindHealth, []readKind{readHealth, readHealth}},
		{"all, a third each", 4, ReadKindAll, []readKind{readBalances, readStatement, readHealth, readBalances}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readerKinds(&Config{Readers: tt.readers, ReadKind: tt.kind})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("readerKinds(%d, %s) (-want +got):\n%s", tt.readers, tt.kind, diff)
			}
		})
	}
}

func TestReaderRequests(t *testing.T) {
	tests := []struct {
		name     string
		accounts int
	}{
		{"two accounts", AccountsMin},
		{"many accounts", 10_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Ledger: "l", Accounts: tt.accounts, Seed: 7}
			r := newReader(0, readBalances, cfg, nil)
			valid := map[string]bool{}
			for i := range tt.accounts {
				valid[accountID(i)] = true
			}
			for range 100 {
				b := r.balancesRequest()
				if b.GetLedger() != "l" || len(b.GetAccounts()) != readBalancesAccounts || b.GetMinPosition() != 0 ||
					b.GetConsistency() != 0 {
					t.Fatalf("balancesRequest() = %v, want %d accounts of l on the projection", b, readBalancesAccounts)
				}
				for _, id := range b.GetAccounts() {
					if !valid[id] {
						t.Fatalf("balancesRequest() asks for %s, not among %d accounts", id, tt.accounts)
					}
				}
				s := r.statementRequest()
				if s.GetLedger() != "l" || !valid[s.GetAccount()] || s.GetLimit() != readStatementLimit ||
					s.GetCursor() != "" || s.GetMinPosition() != 0 {
					t.Fatalf("statementRequest() = %v, want the first page of %d lines of a known account", s, readStatementLimit)
				}
			}
		})
	}
}

func TestSummarizeReads(t *testing.T) {
	newR := func(kind readKind, calls int64, latencies []time.Duration, errs map[string]int64, sample string) *reader {
		r := &reader{kind: kind, calls: calls, latencies: latencies, errorCodes: errs, errorSample: sample}
		for _, n := range errs {
			r.errors += n
		}
		return r
	}
	tests := []struct {
		name    string
		readers []*reader
		elapsed time.Duration
		want    []ReadSummary
	}{
		{"no readers", nil, time.Second, nil},
		{"one kind, two readers", []*reader{
			newR(readBalances, 3, []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}, map[string]int64{}, ""),
			newR(readBalances, 1, []time.Duration{4 * time.Millisecond}, map[string]int64{"Unavailable": 2}, "down"),
		}, 2 * time.Second, []ReadSummary{{
			Kind: "GetBalances", Readers: 2, Calls: 4, QueriesPerSecond: 2,
			LatencyMs: LatencySummary{Count: 4, Mean: 2.5, P50: 2, P99: 4, P999: 4, Max: 4},
			Errors:    2, ErrorCodes: map[string]int64{"Unavailable": 2}, ErrorSample: "down",
		}}},
		{"both kinds, in kind order", []*reader{
			newR(readStatement, 2, []time.Duration{5 * time.Millisecond, 7 * time.Millisecond}, map[string]int64{}, ""),
			newR(readBalances, 1, []time.Duration{time.Millisecond}, map[string]int64{}, ""),
		}, time.Second, []ReadSummary{
			{Kind: "GetBalances", Readers: 1, Calls: 1, QueriesPerSecond: 1,
				LatencyMs: LatencySummary{Count: 1, Mean: 1, P50: 1, P99: 1, P999: 1, Max: 1}},
			{Kind: "ListStatement", Readers: 1, Calls: 2, QueriesPerSecond: 2,
				LatencyMs: LatencySummary{Count: 2, Mean: 6, P50: 5, P99: 7, P999: 7, Max: 7}},
		}},
		{"no time elapsed", []*reader{newR(readStatement, 0, nil, map[string]int64{}, "")}, 0,
			[]ReadSummary{{Kind: "ListStatement", Readers: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarizeReads(tt.readers, tt.elapsed)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("summarizeReads (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadLoadWithoutReaders: a read load of only the lag sampler (no
// readers, so nothing to pace) starts and stops.
func TestReadLoadWithoutReaders(t *testing.T) {
	stop := (&readLoad{}).start(t.Context())
	stop()
}
