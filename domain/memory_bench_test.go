package domain_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// BenchmarkStateMemory reports what the writer's state holds per transfer and
// per account: the retained heap after applying 1,000,000 transfers over
// 10,000 accounts, divided out. The idempotency index is the per-transfer cost.
func BenchmarkStateMemory(b *testing.B) {
	const accounts, transfers = 10_000, 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := domain.NewState()
		pos := uint64(0)
		apply := func(e domain.Event) { pos++; s.Evolve(pos, e) }
		apply(domain.AssetDefined{Code: "USD", Scale: 2})
		for i := 0; i < accounts; i++ {
			apply(domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
		}
		runtime.GC()
		var mid runtime.MemStats
		runtime.ReadMemStats(&mid)
		at := time.Unix(1_800_000_000, 0).UTC()
		for i := 0; i < transfers; i++ {
			apply(domain.TransferCommitted{ID: fmt.Sprintf("t-%d", i), EffectiveAt: at, Postings: []domain.Posting{{
				Debit: fmt.Sprintf("acc-%d", i%accounts), Credit: fmt.Sprintf("acc-%d", (i+1)%accounts), Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(mid.HeapAlloc-before.HeapAlloc)/accounts, "B/account")
		b.ReportMetric(float64(after.HeapAlloc-mid.HeapAlloc)/transfers, "B/transfer")
		runtime.KeepAlive(s)
	}
}

// BenchmarkStateAtScale builds the writer's state of the memory target (1M
// accounts, 10M transfers, one in a hundred a pending hold left open) and
// reports the live heap and the process's resident set after a GC. The
// state is what ledgerd holds per ledger; the RSS here is its floor.
//
//	go test -run '^$' -bench BenchmarkStateAtScale -benchtime 1x ./domain
func BenchmarkStateAtScale(b *testing.B) {
	const accounts, transfers = 1_000_000, 10_000_000
	for b.Loop() {
		s := domain.NewState()
		pos := uint64(0)
		apply := func(e domain.Event) { pos++; s.Evolve(pos, e) }
		apply(domain.AssetDefined{Code: "USD", Scale: 2})
		for i := range accounts {
			apply(domain.AccountOpened{ID: fmt.Sprintf("users:%d:wallet", i), Asset: "USD", Normal: domain.SideCredit})
		}
		at := time.Unix(1_800_000_000, 0).UTC()
		for i := range transfers {
			postings := []domain.Posting{{Debit: fmt.Sprintf("users:%d:wallet", i%accounts),
				Credit: fmt.Sprintf("users:%d:wallet", (i*7+1)%accounts), Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}
			id := fmt.Sprintf("tr-2026-%010d", i)
			if i%100 == 0 {
				apply(domain.TransferPending{ID: id, EffectiveAt: at, Postings: postings})
				continue
			}
			apply(domain.TransferCommitted{ID: id, EffectiveAt: at, Postings: postings})
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "MiB-heap")
		b.ReportMetric(float64(m.Sys)/(1<<20), "MiB-sys")
		if rss, ok := residentMiB(); ok {
			b.ReportMetric(rss, "MiB-rss")
		}
		// What the growth left behind (the index's old tables) goes back to
		// the system: ledgerd does this after loading a ledger.
		debug.FreeOSMemory()
		if rss, ok := residentMiB(); ok {
			b.ReportMetric(rss, "MiB-rss-freed")
		}
		runtime.KeepAlive(s)
	}
}

// residentMiB reads VmRSS from /proc/self/status (Linux).
func residentMiB() (float64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb float64
		if n, _ := fmt.Sscanf(line, "VmRSS: %f kB", &kb); n == 1 {
			return kb / 1024, true
		}
	}
	return 0, false
}
