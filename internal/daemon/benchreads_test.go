package daemon_test

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/bench"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestBenchPacedReaders: with -read-rate the readers call together at that
// rate, not in tight loops (which would send hundreds of calls a second
// here), and each kind is still asked and answered: -read-kind all.
func TestBenchPacedReaders(t *testing.T) {
	t.Parallel()
	h := start(t)
	const rate = 20
	args := []string{"-addr", h.m.GRPCAddr(), "-api-key", h.key, "-ledger", testenv.Name(t), "-accounts", "20",
		"-concurrency", "2", "-rate", "100", "-duration", "3s", "-lag-every", "0",
		"-readers", "6", "-read-kind", "all", "-read-rate", strconv.Itoa(rate)}
	cfg, err := bench.ParseFlags(args, func(string) string { return "" }, time.Now(), io.Discard)
	testenv.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := bench.Run(ctx, cfg, io.Discard)
	testenv.NoError(t, err)
	var calls int64
	for _, s := range r.Reads {
		if s.Calls == 0 || s.Errors != 0 {
			t.Errorf("%s: %d calls answered, %d failed, want some and none: %+v", s.Kind, s.Calls, s.Errors, s)
		}
		calls += s.Calls + s.Errors
	}
	// The readers run a little longer than the measured phase (they start
	// before it and stop after it): a second's worth and one call each of slack.
	if most := int64(rate*(r.DurationSeconds+1)) + 6; calls > most {
		t.Errorf("%d reads in %.1f s at -read-rate %d: want at most %d", calls, r.DurationSeconds, rate, most)
	}
	if len(r.Reads) != 3 {
		t.Errorf("reads %+v: want balances, statements and health checks", r.Reads)
	}
}
