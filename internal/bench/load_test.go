package bench

import (
	"context"
	"testing"
	"time"
)

func TestRequest(t *testing.T) {
	tests := []struct {
		name     string
		accounts int
		hot      bool
		batch    int
	}{
		{"two accounts", AccountsMin, false, 100},
		{"many accounts", 1000, false, 100},
		{"hot with two accounts", AccountsMin, true, 100},
		{"hot", 1000, true, BatchMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Ledger: "l", Accounts: tt.accounts, Hot: tt.hot, Batch: tt.batch, Seed: 7}
			w := newWorker(3, cfg, nil)
			ids := map[string]bool{}
			for range 3 {
				req := w.request(tt.batch)
				if len(req.Transfers) != tt.batch || len(w.amounts) != tt.batch {
					t.Fatalf("%d transfers, %d amounts, want %d", len(req.Transfers), len(w.amounts), tt.batch)
				}
				for i, tr := range req.Transfers {
					if ids[tr.Id] {
						t.Fatalf("transfer id %s twice", tr.Id)
					}
					ids[tr.Id] = true
					p := tr.Postings[0]
					if p.DebitAccount == p.CreditAccount {
						t.Fatalf("transfer %s: %s to itself", tr.Id, p.DebitAccount)
					}
					if tt.hot && p.DebitAccount != "acc-0" && p.CreditAccount != "acc-0" {
						t.Fatalf("transfer %s: %s to %s misses the hot account", tr.Id, p.DebitAccount, p.CreditAccount)
					}
					a := w.amounts[i]
					if a < amountMinorMin || a > amountMinorMax {
						t.Fatalf("amount %d out of %d..%d", a, amountMinorMin, amountMinorMax)
					}
					if got, err := parseMinor(p.Amount, assetScale); err != nil || got.Int64() != a {
						t.Fatalf("amount %q is %v, %v; want %d minor units", p.Amount, got, err, a)
					}
				}
			}
			if first := "t-3-1"; !ids[first] {
				t.Errorf("no transfer %s among %d", first, len(ids))
			}
		})
	}
}

// The pacer hands out turns -rate apart per transfer, from the phase's
// start; a turn already past is taken at once, a future one waited for.
func TestPacerSpacesTurns(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	p := &pacer{every: time.Millisecond, next: start}
	for range 3 {
		if !p.wait(t.Context(), 10) {
			t.Fatal("a turn in the past was not taken at once")
		}
	}
	if want := start.Add(30 * time.Millisecond); !p.next.Equal(want) {
		t.Errorf("next turn %s after three calls of 10, want %s", p.next.Sub(start), want.Sub(start))
	}
	p.next = time.Now().Add(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if p.wait(ctx, 1) {
		t.Error("a turn an hour ahead was taken although the context had ended")
	}
}
