package domain_test

import (
	"fmt"
	"runtime"
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
