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
	bad := []struct {
		name string
		args []string
	}{
		{"batch over max", []string{"-batch", "8193"}},
		{"batch zero", []string{"-batch", "0"}},
		{"one account", []string{"-accounts", "1"}},
		{"no transfers", []string{"-transfers", "0"}},
		{"negative warmup", []string{"-warmup", "-1"}},
		{"concurrency over max", []string{"-concurrency", "4097"}},
		{"bad ledger", []string{"-ledger", "Bench"}},
		{"extra argument", []string{"now"}},
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
