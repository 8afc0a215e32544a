package apikeys

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestNegativeMax: the negative cache never holds more than NegativeMax
// failures, however many distinct keys fail.
func TestNegativeMax(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(nil, Options{Now: func() time.Time { return now }})
	fail := errors.New("unknown")
	for i := range NegativeMax + 10 {
		s.rememberFailure(fmt.Sprintf("%012x", i), [32]byte{}, fail, now)
		if len(s.negative) > NegativeMax {
			t.Fatalf("%d failures remembered, at most %d", len(s.negative), NegativeMax)
		}
	}
	if len(s.negative) != NegativeMax {
		t.Errorf("%d failures remembered at the bound, want %d", len(s.negative), NegativeMax)
	}
	// Expired ones go first.
	now = now.Add(NegativeTTLDefault)
	s.rememberFailure("ffffffffffff", [32]byte{}, fail, now)
	if len(s.negative) != 1 {
		t.Errorf("%d failures after all expired and one more, want 1", len(s.negative))
	}
}
