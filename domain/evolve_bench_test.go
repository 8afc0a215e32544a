package domain_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// BenchmarkEvolveTransfers applies, per op, 10,000 events of every kind that
// moves balances over 1,000 accounts: transfers, holds posted in part (one
// posting posted for nothing), holds voided and expired, and reversals; the
// writer's and the auditor's replay hot path. It reports events/s.
func BenchmarkEvolveTransfers(b *testing.B) {
	const accounts, rounds = 1000, 1000 // 10 events a round
	setup := []domain.Event{domain.AssetDefined{Code: "USD", Scale: 2}}
	for i := range accounts {
		setup = append(setup, domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
	}
	at := time.Unix(1_800_000_000, 0).UTC()
	usd := func(cents int64) domain.Amount { return domain.Amount{Units: domain.UnitsFromInt64(cents), Scale: 2} }
	var events []domain.Event
	pos := uint64(len(setup))
	add := func(e domain.Event) uint64 { events = append(events, e); pos++; return pos }
	for r := range rounds {
		a, c, d := fmt.Sprintf("acc-%d", r%accounts), fmt.Sprintf("acc-%d", (r*7+1)%accounts), fmt.Sprintf("acc-%d", (r*13+2)%accounts)
		p1 := domain.Posting{Debit: a, Credit: c, Asset: "USD", Amount: usd(100)}
		p2 := domain.Posting{Debit: c, Credit: d, Asset: "USD", Amount: usd(50)}
		id := func(k string) string { return fmt.Sprintf("%s-%d", k, r) }
		t1 := add(domain.TransferCommitted{ID: id("t"), EffectiveAt: at, Postings: []domain.Posting{p1}})
		add(domain.TransferCommitted{ID: id("u"), EffectiveAt: at, Postings: []domain.Posting{p1, p2}})
		add(domain.TransferPending{ID: id("h"), EffectiveAt: at, Postings: []domain.Posting{p1, p2}})
		add(domain.PendingPosted{ID: id("p"), PendingID: id("h"), EffectiveAt: at, Postings: []domain.HeldPosting{
			{Debit: a, Credit: c, Asset: "USD", Amount: usd(60), Held: usd(100)},
			{Debit: c, Credit: d, Asset: "USD", Amount: usd(0), Held: usd(50)}}})
		add(domain.TransferPending{ID: id("v"), EffectiveAt: at, Postings: []domain.Posting{p2}})
		add(domain.PendingVoided{ID: id("vv"), PendingID: id("v"), Postings: []domain.Posting{p2}})
		add(domain.TransferPending{ID: id("x"), EffectiveAt: at, Postings: []domain.Posting{p1}})
		add(domain.PendingExpired{PendingID: id("x"), Postings: []domain.Posting{p1}})
		add(domain.TransferReversed{ID: id("r"), TransferID: id("t"), TransferPosition: t1, EffectiveAt: at,
			Postings: []domain.Posting{{Debit: c, Credit: a, Asset: "USD", Amount: usd(40)}}})
		add(domain.TransferCommitted{ID: id("w"), EffectiveAt: at, Postings: []domain.Posting{p2}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s := domain.NewState()
		for i, e := range setup {
			s.Evolve(uint64(i+1), e)
		}
		b.StartTimer()
		for i, e := range events {
			s.Evolve(uint64(len(setup)+i+1), e)
		}
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvolveScattered applies 200,000 one-posting transfers between
// random accounts of 10,000 or 1,000,000, opened among other allocations and
// named by strings of their own in each event, as a replay decodes them:
// what finding the accounts costs when they are not in cache. It reports
// events/s.
func BenchmarkEvolveScattered(b *testing.B) {
	for _, accounts := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(accounts), func(b *testing.B) {
			s := domain.NewState()
			s.Evolve(1, domain.AssetDefined{Code: "USD", Scale: 2})
			// Small strings allocated between two opens, as a decoder's
			// others are: the ids do not lie side by side.
			other := make([]string, 0, 2*accounts)
			for i := range accounts {
				other = append(other, fmt.Sprint("x", i), fmt.Sprint("y", i))
				s.Evolve(uint64(i+2), domain.AccountOpened{ID: fmt.Sprintf("acc-%07d", i), Asset: "USD", Normal: domain.SideCredit})
			}
			runtime.KeepAlive(other)
			rng := rand.New(rand.NewPCG(1, 2))
			at := time.Unix(1_800_000_000, 0).UTC()
			const n = 200_000
			events := make([]domain.Event, n)
			for i := range events {
				d := rng.IntN(accounts)
				events[i] = domain.TransferCommitted{ID: fmt.Sprint("t", i), EffectiveAt: at, Postings: []domain.Posting{{
					Debit: fmt.Sprintf("acc-%07d", d), Credit: fmt.Sprintf("acc-%07d", (d+1+rng.IntN(accounts-1))%accounts),
					Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(1), Scale: 2}}}}
			}
			pos := uint64(accounts + 1)
			b.ResetTimer()
			for b.Loop() {
				for _, e := range events {
					pos++
					s.Evolve(pos, e)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDecideTransfer decides a one-posting transfer between two of
// 1,000 accounts (validated first, as the writer does; not applied, so
// every id stays new): the writer's decision alone, its allocations
// included.
func BenchmarkDecideTransfer(b *testing.B) {
	s := domain.NewState()
	s.Evolve(1, domain.AssetDefined{Code: "USD", Scale: 2})
	const accounts = 1000
	for i := range accounts {
		s.Evolve(uint64(2+i), domain.AccountOpened{ID: fmt.Sprintf("acc-%d", i), Asset: "USD", Normal: domain.SideCredit})
	}
	cmds := make([]*domain.CreateTransfer, accounts)
	for i := range cmds {
		cmds[i] = &domain.CreateTransfer{ID: fmt.Sprintf("t-%d", i), Postings: []domain.PostingInput{{
			Debit: fmt.Sprintf("acc-%d", i), Credit: fmt.Sprintf("acc-%d", (i*7+1)%accounts), Asset: "USD", Amount: "1.25"}}}
		if err := cmds[i].Validate(); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := domain.Decide(s, cmds[i%accounts], now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
