package domain_test

import (
	"testing"
	"time"
)

// TestVelocityLetsAnOrdinaryTransferThroughAfterAFutureOne: a posting
// effective a few minutes ahead (within EffectiveFutureMax, the clock skew a
// writer allows) made the ring let go of a posting still inside the window
// of the next ordinary transfer, and the horizon then refused that transfer
// although nothing was backdated and the rule (10 an hour) was far from its
// limit. The rings keep EffectiveFutureMax more than the longest window.
func TestVelocityLetsAnOrdinaryTransferThroughAfterAFutureOne(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "1000")))
	applyAt(t, s, velocityRule("ten-an-hour", 10), now.Add(-2*time.Hour))
	// An ordinary debit 59 minutes ago (effective when recorded).
	applyAt(t, s, transfer("t0", posting("carol", "world", "USD", "1")), now.Add(-59*time.Minute))
	// A debit a minute ago, effective 4 minutes ahead of the writer's clock.
	ahead := transfer("t1", posting("carol", "world", "USD", "1"))
	ahead.EffectiveAt = now.Add(3 * time.Minute)
	applyAt(t, s, ahead, now.Add(-time.Minute))
	// An ordinary debit now: its window (now-1h, now] holds t0, the third
	// debit of the hour at most; ten are allowed.
	if _, err := decide(s, transfer("t2", posting("carol", "world", "USD", "1"))); err != nil {
		t.Fatalf("an ordinary transfer, the 3rd debit of the hour under a max_count 10 rule: %v, want it let through", err)
	}
}

// TestVelocityLetsAnOrdinaryTransferThroughAfterTheWindowGrows: a rule
// whose window grew from 1 h to 24 h kept the horizon of what the rings let
// go under the 1 h window, and every ordinary transfer of the account was
// refused for the next 23 hours. A longer window counts from its
// definition on: the horizons reset.
func TestVelocityLetsAnOrdinaryTransferThroughAfterTheWindowGrows(t *testing.T) {
	s := newWorld(t)
	apply(t, s, transfer("fund", posting("world", "carol", "USD", "1000")))
	applyAt(t, s, velocityRule("ten", 10), now.Add(-4*time.Hour))
	applyAt(t, s, transfer("t0", posting("carol", "world", "USD", "1")), now.Add(-3*time.Hour))
	applyAt(t, s, transfer("t1", posting("carol", "world", "USD", "1")), now.Add(-time.Hour))
	day := velocityRule("ten", 10)
	day.Rule.Velocity.WindowSeconds = 24 * 3600
	applyAt(t, s, day, now.Add(-30*time.Minute))
	if _, err := decide(s, transfer("t2", posting("carol", "world", "USD", "1"))); err != nil {
		t.Fatalf("an ordinary transfer, the 3rd debit of the day under a max_count 10 rule: %v, want it let through", err)
	}
}
