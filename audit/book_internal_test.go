package audit

import (
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// What the book digests of a line when it keeps no lines, written from
// the numbers, is what it digests of the line it builds when it keeps them.
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
	seed := maphash.MakeSeed()
	digestsOnly := &book{seed: seed, digests: true}
	keeping := &book{seed: seed, digests: true, lines: func(*bookAccount, *line) error { return nil }}
	for range 20_000 {
		a := bookAccount{scale: uint8(rng.IntN(19)), digest: rng.Uint64(), moved: uint64(rng.IntN(2)), seq: uint32(rng.IntN(3))}
		a.totals.Normal = []domain.Side{domain.SideDebit, domain.SideCredit}[rng.IntN(2)]
		a.totals.DebitsPosted, a.totals.CreditsPosted, a.totals.DebitsPending, a.totals.CreditsPending = units(), units(),
			units(), units()
		m := &domain.Movement{Counterparty: text(), Transfer: text(), Side: domain.Side(rng.IntN(3)), Pending: rng.IntN(2) == 0,
			Amount: units(), Posting: rng.IntN(300)}
		ev := &lineEvent{kind: text(), effectiveAt: rng.Int64() >> rng.IntN(64), recordedAt: -rng.Int64N(1 << 40),
			reference: text(), metadata: text()}
		pos := uint64(rng.IntN(2))
		got, want := a, a
		testenv.NoError(t, digestsOnly.line(&got, m, pos, ev))
		testenv.NoError(t, keeping.line(&want, m, pos, ev))
		if got.digest != want.digest || got.sum != want.sum || got.seq != want.seq || got.lines != want.lines {
			t.Fatalf("digests alone: %x %x, want %x %x (the movement %+v at %d)", got.digest, got.sum, want.digest, want.sum,
				m, pos)
		}
	}
}
