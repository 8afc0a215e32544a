package bench

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	now := time.Unix(1700000000, 0)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	t.Run("defaults", func(t *testing.T) {
		c, err := ParseFlags(nil, env(nil), now, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := Config{Addr: "127.0.0.1:7070", Ledger: "bench-1700000000", Transfers: 100_000, Accounts: 10_000,
			Concurrency: 64, Batch: 1, Seed: 1, CommandLine: "ledgerbench"}
		if c.Addr != want.Addr || c.Ledger != want.Ledger || c.Transfers != want.Transfers || c.Accounts != want.Accounts ||
			c.Concurrency != want.Concurrency || c.Batch != want.Batch || c.Seed != want.Seed || c.CommandLine != want.CommandLine {
			t.Errorf("ParseFlags() = %+v, want %+v", c, want)
		}
		if c.Readers != 0 || c.ReadKind != ReadKindBoth || c.LagEvery != 100*time.Millisecond {
			t.Errorf("ParseFlags() readers=%d read-kind=%q lag-every=%s, want 0, both, 100ms", c.Readers, c.ReadKind, c.LagEvery)
		}
	})
	t.Run("reads", func(t *testing.T) {
		args := []string{"-readers", "512", "-read-kind", "statement", "-lag-every", "0"}
		c, err := ParseFlags(args, env(nil), now, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Readers != ReadersMax || c.ReadKind != ReadKindStatement || c.LagEvery != 0 {
			t.Errorf("ParseFlags(%q) = %+v", args, c)
		}
	})
	t.Run("lag every at its bounds", func(t *testing.T) {
		for _, every := range []string{"1ms", "1m"} {
			if _, err := ParseFlags([]string{"-lag-every", every}, env(nil), now, io.Discard); err != nil {
				t.Errorf("ParseFlags(-lag-every %s): %v", every, err)
			}
		}
	})
	t.Run("env and flags", func(t *testing.T) {
		args := []string{"-batch", "8192", "-hot", "-ledger", "x-1"}
		c, err := ParseFlags(args, env(map[string]string{"LEDGER_ADDR": "h:1"}), now, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Addr != "h:1" || c.Batch != BatchMax || !c.Hot || c.Ledger != "x-1" {
			t.Errorf("ParseFlags(%q) = %+v", args, c)
		}
		if want := "ledgerbench -batch 8192 -hot -ledger x-1"; c.CommandLine != want {
			t.Errorf("CommandLine = %q, want %q", c.CommandLine, want)
		}
	})
	t.Run("baseline transfers default", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want int
		}{
			{[]string{"-transfers", "500"}, 0},
			{[]string{"-transfers", "500", "-baseline-postgres-url", "postgres:///n"}, 500},
			{[]string{"-transfers", "300000", "-baseline-postgres-url", "postgres:///n"}, BaselineTransfersDefaultMax},
			{[]string{"-transfers", "300000", "-baseline-postgres-url", "postgres:///n", "-baseline-transfers", "7"}, 7},
		} {
			c, err := ParseFlags(tt.args, env(nil), now, io.Discard)
			if err != nil || c.BaselineTransfers != tt.want {
				t.Errorf("ParseFlags(%q) baseline transfers = %d, %v; want %d", tt.args, c.BaselineTransfers, err, tt.want)
			}
		}
	})
	t.Run("pids at their bounds", func(t *testing.T) {
		args := []string{"-ledgerd-pid", "1", "-postgres-pid", "4194304", "-nats-pid", "0"}
		c, err := ParseFlags(args, env(nil), now, io.Discard)
		if err != nil || c.LedgerdPID != 1 || c.PostgresPID != PIDMax || c.NATSPID != 0 {
			t.Errorf("ParseFlags(%q) = %+v, %v", args, c, err)
		}
	})
	t.Run("duration and webhooks", func(t *testing.T) {
		c, err := ParseFlags([]string{"-duration", "3m", "-webhook-stall", "1m", "-webhook-accounts", "users:*"}, env(nil), now, io.Discard)
		if err != nil || c.Duration != 3*time.Minute || c.Transfers != TransfersMax || c.WebhookStall != time.Minute ||
			c.WebhookAccounts != "users:*" || c.WebhookWait != WebhookWaitDefault {
			t.Errorf("ParseFlags = %+v, %v", c, err)
		}
		c, err = ParseFlags([]string{"-duration", "1s", "-transfers", "5"}, env(nil), now, io.Discard)
		if err != nil || c.Transfers != 5 || c.WebhookWait != 0 {
			t.Errorf("ParseFlags(-duration -transfers) = %+v, %v; want 5 transfers and no webhook wait", c, err)
		}
		c, err = ParseFlags([]string{"-duration", "24h", "-webhook-stall", "1h", "-webhook-wait", "24h"}, env(nil), now, io.Discard)
		if err != nil || c.Duration != DurationMax || c.WebhookStall != WebhookStallMax || c.WebhookWait != WebhookWaitMax {
			t.Errorf("ParseFlags at the bounds = %+v, %v", c, err)
		}
	})
	bad := []struct {
		name string
		args []string
	}{
		{"batch over max", []string{"-batch", "8193"}},
		{"batch zero", []string{"-batch", "0"}},
		{"auto-batch with batches", []string{"-auto-batch", "-batch", "2"}},
		{"one account", []string{"-accounts", "1"}},
		{"no transfers", []string{"-transfers", "0"}},
		{"negative warmup", []string{"-warmup", "-1"}},
		{"concurrency over max", []string{"-concurrency", "4097"}},
		{"bad ledger", []string{"-ledger", "Bench"}},
		{"extra argument", []string{"now"}},
		{"negative readers", []string{"-readers", "-1"}},
		{"readers over max", []string{"-readers", "513"}},
		{"negative read rate", []string{"-readers", "2", "-read-rate", "-1"}},
		{"read rate over max", []string{"-readers", "2", "-read-rate", "10000001"}},
		{"read rate without readers", []string{"-read-rate", "100"}},
		{"unknown read kind", []string{"-readers", "2", "-read-kind", "transfers"}},
		{"lag every under min", []string{"-lag-every", "999us"}},
		{"lag every over max", []string{"-lag-every", "61s"}},
		{"negative lag every", []string{"-lag-every", "-1ms"}},
		{"catch-up wait under min", []string{"-catch-up-wait", "999ms"}},
		{"catch-up wait over max", []string{"-catch-up-wait", "24h1s"}},
		{"negative ledgerd pid", []string{"-ledgerd-pid", "-1"}},
		{"postgres pid over max", []string{"-postgres-pid", "4194305"}},
		{"negative nats pid", []string{"-nats-pid", "-1"}},
		{"baseline transfers over max", []string{"-baseline-postgres-url", "postgres:///n", "-baseline-transfers", "100000001"}},
		{"duration under min", []string{"-duration", "999ms"}},
		{"duration over max", []string{"-duration", "24h1s"}},
		{"webhook stall under min", []string{"-webhook-stall", "999ms"}},
		{"webhook stall over max", []string{"-webhook-stall", "1h1s"}},
		{"duration within the stall", []string{"-webhook-stall", "1m", "-duration", "1m"}},
		{"webhook wait under min", []string{"-webhook-stall", "1m", "-webhook-wait", "999ms"}},
		{"webhook wait over max", []string{"-webhook-stall", "1m", "-webhook-wait", "24h1s"}},
		{"webhook accounts without a stall", []string{"-webhook-accounts", "acc-0"}},
		{"bad webhook accounts", []string{"-webhook-stall", "1m", "-webhook-accounts", "acc-*0"}},
		{"negative baseline transfers", []string{"-baseline-postgres-url", "postgres:///n", "-baseline-transfers", "-1"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFlags(tt.args, env(nil), now, io.Discard); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("ParseFlags(%q) error = %v, want ErrInvalidConfig", tt.args, err)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "-addr=127.0.0.1:7070", "-addr=127.0.0.1:7070"},
		{"empty", "", "''"},
		{"space", "a b", "'a b'"},
		{"quote", "it's", `'it'\''s'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shellQuote(tt.in); got != tt.want {
				t.Errorf("shellQuote(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
