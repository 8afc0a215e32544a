package domain_test

import (
	"errors"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestTransferIdHashCollision: a new id whose hash another transfer holds is a
// new transfer, not a retry; afterwards both ids answer EXISTS at their own
// positions.
func TestTransferIdHashCollision(t *testing.T) {
	s := newWorld(t)
	first := apply(t, s, transfer("first", usdOne()))
	domain.CollideTransferID(s, "second", first)

	e, err := decide(s, transfer("second", usdOne()))
	if err != nil {
		t.Fatalf("colliding new id: %v, want created", err)
	}
	second := s.Position() + 1
	s.Evolve(second, e)

	for id, want := range map[string]uint64{"first": first, "second": second} {
		_, err := decide(s, transfer(id, usdOne()))
		var exists *domain.ExistsError
		if !errors.As(err, &exists) || exists.Position != want {
			t.Errorf("retry of %s: %v, want EXISTS at %d", id, err, want)
		}
	}
	if got := s.TransferCount(); got < 2 {
		t.Errorf("TransferCount = %d, want both transfers indexed", got)
	}
}

// TestTransferIdHashTopBitsCollision: two ids whose hashes differ but agree
// in the top bits the index keeps are two transfers. The second is decided
// new once the first is read back, and held by its exact id; each retry
// answers EXISTS at its own position, after a rollback of the second and
// after a snapshot's round trip alike.
func TestTransferIdHashTopBitsCollision(t *testing.T) {
	t.Parallel()
	// Under the SipHash test vectors' key, the first pair a search of tr-0,
	// tr-1, ... finds.
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	const first, second = "tr-682102", "tr-760679"
	s := newWorld(t)
	domain.SetIDKey(s, k0, k1)
	h1, h2 := domain.IDHash(s, first), domain.IDHash(s, second)
	if drop := 64 - domain.IDHashBits; h1 == h2 || h1>>drop != h2>>drop {
		t.Fatalf("hashes %#x and %#x: not a collision in the top %d bits only", h1, h2, domain.IDHashBits)
	}
	e1, err := decide(s, transfer(first, usdOne()))
	if err != nil {
		t.Fatalf("%s: %v", first, err)
	}
	p1 := s.Position() + 1
	s.Evolve(p1, e1)

	c := transfer(second, usdOne())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var need *domain.NeedPriorError
	if _, err := domain.Decide(s, c, now); !errors.As(err, &need) || need.Position != p1 {
		t.Fatalf("Decide of %s: %v, want NeedPriorError at %d (the index holds %s's entry)", second, err, p1, first)
	}
	placeSecond := func() (domain.Event, uint64) {
		t.Helper()
		e, err := decide(s, transfer(second, usdOne()))
		if err != nil {
			t.Fatalf("%s, colliding in %d bits with %s: %v, want created", second, domain.IDHashBits, first, err)
		}
		s.Evolve(s.Position()+1, e)
		return e, s.Position()
	}
	s.Begin()
	placeSecond()
	s.Rollback()
	if domain.IDExact(s, second) || s.TransferCount() != 1 {
		t.Fatalf("after a rollback of %s: exact %v, %d ids; want false, 1", second, domain.IDExact(s, second), s.TransferCount())
	}
	e2, p2 := placeSecond()

	check := func(what string, s *domain.State) {
		t.Helper()
		if !domain.IDExact(s, second) || domain.IDExact(s, first) || s.TransferCount() != 2 {
			t.Fatalf("%s: exact %v for %s, %v for %s, %d ids; want true, false, 2", what,
				domain.IDExact(s, second), second, domain.IDExact(s, first), first, s.TransferCount())
		}
		for id, want := range map[string]uint64{first: p1, second: p2} {
			_, err := decide(s, transfer(id, usdOne()))
			var exists *domain.ExistsError
			if !errors.As(err, &exists) || exists.Position != want {
				t.Errorf("%s: retry of %s: %v, want EXISTS at %d", what, id, err, want)
			}
		}
	}
	check("applied", s)
	loaded := unmarshalSnapshot(t, marshalSnapshot(t, s))
	remember(loaded, p1, e1)
	remember(loaded, p2, e2)
	check("loaded from a snapshot", loaded)
}

// TestDecideAsksForPrior: a retried id needs the committed transfer; Decide
// says which position, and answers once it has it.
func TestDecideAsksForPrior(t *testing.T) {
	s := newWorld(t)
	pos := apply(t, s, transfer("t1", usdOne()))
	c := transfer("t1", usdOne())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := domain.Decide(s, c, now)
	var need *domain.NeedPriorError
	if !errors.As(err, &need) || need.Position != pos {
		t.Fatalf("Decide of a retry without its prior: %v, want NeedPriorError at %d", err, pos)
	}
}
