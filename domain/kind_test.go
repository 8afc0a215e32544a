package domain_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func TestSentinelOf(t *testing.T) {
	unavailable := domain.NewError(domain.KindUnavailable, "unavailable", "")
	conflict := domain.NewError(domain.KindConflict, "archived", "")
	plain := errors.New("plain")
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: none found
	}{
		{"itself", domain.ErrAccountNotFound, domain.ErrAccountNotFound},
		{"wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", domain.ErrUnknownLedger)), domain.ErrUnknownLedger},
		{"in a field error", &domain.FieldError{Field: "postings[0].amount", Err: domain.ErrInvalidAmount}, domain.ErrInvalidAmount},
		{"exists error", &domain.ExistsError{Position: 3}, domain.ErrExists},
		{"none", fmt.Errorf("x: %w", plain), nil},
		{"nil", nil, nil},
		{"unavailable alone", fmt.Errorf("x: %w: %w", unavailable, plain), unavailable},
		{"the cause outranks unavailable", fmt.Errorf("x: %w: %w", unavailable, fmt.Errorf("y: %w", conflict)), conflict},
		{"after unavailable, deeper", fmt.Errorf("x: %w", fmt.Errorf("%w: %w", unavailable, fmt.Errorf("%w", conflict))), conflict},
		{"the first of two", fmt.Errorf("%w: %w", domain.ErrUnknownLedger, conflict), domain.ErrUnknownLedger},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := domain.SentinelOf(tc.err)
			if tc.want == nil {
				if ok {
					t.Fatalf("got %v, want none", got)
				}
				return
			}
			if !ok || error(got) != tc.want {
				t.Fatalf("got %v (%v), want %v", got, ok, tc.want)
			}
		})
	}
}

func TestErrorCarriesItsAnswer(t *testing.T) {
	e, _ := domain.SentinelOf(domain.ErrUnknownLedger)
	if e.Kind() != domain.KindInvalid || e.Field() != "ledger" || e.Hint() == "" || e.Code() != "" {
		t.Errorf("ErrUnknownLedger: kind %v field %q hint %q code %q", e.Kind(), e.Field(), e.Hint(), e.Code())
	}
	o, _ := domain.SentinelOf(domain.ErrBelowMinBalance)
	if o.Code() != "BELOW_MIN_BALANCE" || o.Kind() != domain.KindInvalid {
		t.Errorf("ErrBelowMinBalance: code %q kind %v", o.Code(), o.Kind())
	}
	if got := domain.KindTimeout.String(); got != "timeout" {
		t.Errorf("KindTimeout is %q", got)
	}
	if got := domain.Kind(99).String(); got != "kind(99)" {
		t.Errorf("Kind(99) is %q", got)
	}
}
