package daemon_test

import (
	"io"
	"testing"

	"github.com/ledgerd/ledger/internal/daemon"
)

// TestPartitionEventsTakesPostgresURLFromEnv: `ledgerd migrate
// -partition-events N` with the URL in LEDGER_POSTGRES_URL (as the docs ask
// for secrets: by environment, not flag) must not be refused as if no URL were
// given. It was: the check ran before the environment was read.
func TestPartitionEventsTakesPostgresURLFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LEDGER_POSTGRES_URL": "postgres://owner:secret@127.0.0.1:5432/ledger"}
	c, err := daemon.ParseFlags([]string{"-partition-events", "8"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("LEDGER_POSTGRES_URL set, -partition-events 8: %v", err)
	}
	if c.PartitionEvents != 8 || c.PostgresURL == "" {
		t.Fatalf("config: partitions %d, url %q", c.PartitionEvents, c.PostgresURL)
	}
}

// TestStreamMaxAgeOutOfRange: a -stream-max-age JetStream refuses
// (negative: "max age can not be negative"; under the 5 s duplicate window
// ledgerd sets: "duplicates window can not be larger then max age") is
// accepted, and then every ledger's stream creation failed forever: the relay
// and projections never moved. It is refused at start.
func TestStreamMaxAgeOutOfRange(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"-1h", "1s", "50ms"} {
		if c, err := daemon.ParseFlags([]string{"-stream-max-age", v}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("-stream-max-age %s: accepted (StreamMaxAge %s)", v, c.StreamMaxAge)
		}
		env := map[string]string{"LEDGER_STREAM_MAX_AGE": v}
		if c, err := daemon.ParseFlags(nil, func(k string) string { return env[k] }, io.Discard); err == nil {
			t.Errorf("LEDGER_STREAM_MAX_AGE=%s: accepted (StreamMaxAge %s)", v, c.StreamMaxAge)
		}
	}
}

// TestEffectiveMaxNegative: a negative -effective-future-max makes
// every transfer dated in the last |d| refused as "in the future"; a negative
// -effective-past-max silently meant "any past". Both are refused.
func TestEffectiveMaxNegative(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-effective-future-max", "-1h"}, {"-effective-past-max", "-1h"}} {
		if c, err := daemon.ParseFlags(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v: accepted (past %s, future %s)", args, c.EffectivePastMax, c.EffectiveFutureMax)
		}
	}
}

// TestPostgresConnsMaxNonPositive: -postgres-conns-max 0 or -5
// was accepted and silently became a pool of 4 (postgres.go: max(n, 4));
// -conns-max -1 the default. Both are refused.
func TestPostgresConnsMaxNonPositive(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "-5"} {
		if c, err := daemon.ParseFlags([]string{"-postgres-conns-max", v}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("-postgres-conns-max %s: accepted (%d)", v, c.PostgresConnsMax)
		}
	}
	if _, err := daemon.ParseFlags([]string{"-conns-max", "-1"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Errorf("-conns-max -1: accepted")
	}
}
