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
