package audit

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// What the book digests of a line, written from the numbers, is what
// appendLine writes of the line built with their texts.
func TestMovementLineIsTheLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	text := func() string { return strings.Repeat("ü-", rng.IntN(4)) }
	units := func() domain.Units {
		u := domain.UnitsFromInt64(rng.Int64N(1 << uint(1+rng.IntN(62))))
		for range rng.IntN(3) {
			u = u.Add(u.Add(u)) // past 64 bits, now and then
		}
		if rng.IntN(3) == 0 {
			u = u.Neg()
		}
		return u
	}
	for range 20_000 {
		a := &bookAccount{scale: uint8(rng.IntN(19))}
		a.totals.Normal = []domain.Side{domain.SideDebit, domain.SideCredit}[rng.IntN(2)]
		a.totals.DebitsPosted, a.totals.CreditsPosted, a.totals.DebitsPending, a.totals.CreditsPending = units(), units(),
			units(), units()
		m := &domain.Movement{Counterparty: text(), Transfer: text(), Side: domain.Side(rng.IntN(3)), Pending: rng.IntN(2) == 0,
			Amount: units(), Posting: rng.IntN(300)}
		ev := &lineEvent{kind: text(), effectiveAt: rng.Int64() >> rng.IntN(64), recordedAt: -rng.Int64N(1 << 40),
			reference: text(), metadata: text()}
		pos := rng.Uint64() >> rng.IntN(64)
		l := line{position: pos, postingIndex: uint32(m.Posting), kind: ev.kind, transferID: m.Transfer, counter: m.Counterparty,
			side: m.Side.String(), pending: m.Pending, amount: m.Amount.Format(a.scale),
			runningBalance: a.totals.Balance().Format(a.scale), runningAvailable: a.totals.Available().Format(a.scale),
			effectiveAt: ev.effectiveAt, recordedAt: ev.recordedAt, reference: ev.reference, metadata: ev.metadata}
		if got, want := appendMovementLine(nil, a, m, pos, ev), appendLine(nil, &l); !bytes.Equal(got, want) {
			t.Fatalf("%q, want %q", got, want)
		}
	}
}
