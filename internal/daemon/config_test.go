package daemon_test

import (
	"io"
	"testing"

	"github.com/ledgerd/ledger/internal/daemon"
)

// TestParseFlagsRefusesMalformedEnvironment: a set but malformed LEDGER_*
// value is an error, not a silent default.
func TestParseFlagsRefusesMalformedEnvironment(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"LEDGER_SNAPSHOT_EVERY", "LEDGER_EFFECTIVE_PAST_MAX", "LEDGER_EFFECTIVE_FUTURE_MAX", "LEDGER_STREAM_MAX_AGE"} {
		env := map[string]string{key: "bogus"}
		if _, err := daemon.ParseFlags(nil, func(k string) string { return env[k] }, io.Discard); err == nil {
			t.Errorf("%s=bogus: no error", key)
		}
	}
	env := map[string]string{"LEDGER_SNAPSHOT_EVERY": "5", "LEDGER_EFFECTIVE_PAST_MAX": "1h"}
	c, err := daemon.ParseFlags(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.SnapshotEvery != 5 || c.EffectivePastMax.String() != "1h0m0s" {
		t.Errorf("valid environment: %+v, %v", c, err)
	}
}
