package domain_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// BenchmarkEvaluatorNoRules is what the alerts projection and verify's
// replay pay an event on a ledger without rules: the evaluator keeps the
// balances and last activity future rules start from.
func BenchmarkEvaluatorNoRules(b *testing.B) {
	const accounts = 10_000
	ev := domain.NewEvaluator("bench", nil)
	at := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	pos := uint64(1)
	ev.Apply(pos, at, domain.AssetDefined{Code: "USD", Scale: 2})
	ids := make([]string, accounts)
	for i := range ids {
		pos++
		ids[i] = fmt.Sprintf("acc-%06d", i)
		ev.Apply(pos, at, domain.AccountOpened{ID: ids[i], Asset: "USD", Normal: domain.SideDebit})
	}
	r := rand.New(rand.NewPCG(1, 2))
	events := make([]domain.Event, 4096)
	for i := range events {
		d, c := r.IntN(accounts), r.IntN(accounts-1)
		if c >= d {
			c++
		}
		events[i] = domain.TransferCommitted{ID: fmt.Sprintf("t%d", i), EffectiveAt: at, Postings: []domain.Posting{
			{Debit: ids[d], Credit: ids[c], Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(100), Scale: 2}}}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pos++
		ev.Apply(pos, at, events[i%len(events)])
		i++
	}
}
