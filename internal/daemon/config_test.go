package daemon_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/projections"
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

// TestParseFlagsAuth: auth is on unless turned off explicitly; TLS needs
// both files; a malformed -admin-key is refused before anything starts.
func TestParseFlagsAuth(t *testing.T) {
	t.Parallel()
	key := "lk_0123456789ab_" + strings.Repeat("a", 52)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr bool
		check   func(daemon.Config) bool
	}{
		{"default on", nil, nil, false, func(c daemon.Config) bool { return !c.AuthDisabled }},
		{"flag off", []string{"-auth=false"}, nil, false, func(c daemon.Config) bool { return c.AuthDisabled }},
		{"env off", nil, map[string]string{"LEDGER_AUTH": "off"}, false, func(c daemon.Config) bool { return c.AuthDisabled }},
		{"flag over env", []string{"-auth=true"}, map[string]string{"LEDGER_AUTH": "off"}, false, func(c daemon.Config) bool { return !c.AuthDisabled }},
		{"env bogus", nil, map[string]string{"LEDGER_AUTH": "maybe"}, true, nil},
		{"admin key from env", nil, map[string]string{"LEDGER_ADMIN_KEY": key}, false, func(c daemon.Config) bool { return c.AdminKey == key }},
		{"admin key malformed", []string{"-admin-key", "secret"}, nil, true, nil},
		{"tls pair", []string{"-tls-cert", "c.pem", "-tls-key", "k.pem"}, nil, false, func(c daemon.Config) bool { return c.TLSCert == "c.pem" && c.TLSKey == "k.pem" }},
		{"tls cert alone", nil, map[string]string{"LEDGER_TLS_CERT": "c.pem"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if (err != nil) != tc.wantErr || (err == nil && !tc.check(c)) {
				t.Errorf("ParseFlags(%q, %v): %+v, %v", tc.args, tc.env, c, err)
			}
		})
	}
}

// TestParseFlagsProjectionLinger: the linger defaults to the projections'
// default and is bounded at one second.
func TestParseFlagsProjectionLinger(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		{nil, nil, projections.LingerDefault, false},
		{[]string{"-projection-linger", "0s"}, nil, 0, false},
		{nil, map[string]string{"LEDGER_PROJECTION_LINGER": "1s"}, time.Second, false},
		{[]string{"-projection-linger", "1.001s"}, nil, 0, true},
		{[]string{"-projection-linger", "-1ms"}, nil, 0, true},
		{nil, map[string]string{"LEDGER_PROJECTION_LINGER": "soon"}, 0, true},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if (err != nil) != tc.wantErr || err == nil && c.ProjectionLinger != tc.want {
			t.Errorf("ParseFlags(%q, %v): linger %s, %v; want %s (error %v)", tc.args, tc.env, c.ProjectionLinger, err, tc.want, tc.wantErr)
		}
	}
}

// TestParseFlagsWebhookEndpoint: the per-endpoint rate and concurrency
// default to the dispatcher's and are bounded.
func TestParseFlagsWebhookEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args              []string
		env               map[string]string
		rate, concurrency int
		wantErr           bool
	}{
		{nil, nil, webhooks.EndpointRateDefault, webhooks.EndpointConcurrencyDefault, false},
		{[]string{"-webhook-endpoint-rate", "2000", "-webhook-endpoint-concurrency", "16"}, nil, 2000, 16, false},
		{nil, map[string]string{"LEDGER_WEBHOOK_ENDPOINT_RATE": "10000", "LEDGER_WEBHOOK_ENDPOINT_CONCURRENCY": "256"}, 10000, 256, false},
		{[]string{"-webhook-endpoint-rate", "0"}, nil, 0, 0, true},
		{[]string{"-webhook-endpoint-rate", "10001"}, nil, 0, 0, true},
		{[]string{"-webhook-endpoint-concurrency", "0"}, nil, 0, 0, true},
		{[]string{"-webhook-endpoint-concurrency", "257"}, nil, 0, 0, true},
		{nil, map[string]string{"LEDGER_WEBHOOK_ENDPOINT_RATE": "fast"}, 0, 0, true},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if (err != nil) != tc.wantErr ||
			err == nil && (c.Webhooks.EndpointRate != tc.rate || c.Webhooks.EndpointConcurrency != tc.concurrency) {
			t.Errorf("ParseFlags(%q, %v): rate %d, concurrency %d, %v; want %d, %d (error %v)", tc.args, tc.env,
				c.Webhooks.EndpointRate, c.Webhooks.EndpointConcurrency, err, tc.rate, tc.concurrency, tc.wantErr)
		}
	}
}

// TestParseFlagsWebhookPayloadMax: a delivery's bound defaults to the
// dispatcher's and may reach the largest event's.
func TestParseFlagsWebhookPayloadMax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		want    int
		wantErr bool
	}{
		{nil, nil, webhooks.PayloadMaxDefault, false},
		{[]string{"-webhook-payload-max", "4194304"}, nil, 4 << 20, false},
		{nil, map[string]string{"LEDGER_WEBHOOK_PAYLOAD_MAX": "65536"}, 64 << 10, false},
		{[]string{"-webhook-payload-max", "65535"}, nil, 0, true},
		{[]string{"-webhook-payload-max", "4194305"}, nil, 0, true},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if (err != nil) != tc.wantErr || err == nil && c.Webhooks.PayloadMax != tc.want {
			t.Errorf("ParseFlags(%q, %v): %d, %v; want %d (error %v)", tc.args, tc.env, c.Webhooks.PayloadMax, err, tc.want, tc.wantErr)
		}
	}
	if domain.EventPayloadMax+64<<10 > 4<<20 {
		t.Errorf("the largest event (%d bytes) and its envelope are over the flag's bound", domain.EventPayloadMax)
	}
}

// TestParseFlagsListenAddresses: dev mode (no PostgreSQL and no NATS URL)
// listens on the loopback only; with an external server, or an address given
// by flag or environment, ledgerd listens where it is told.
func TestParseFlagsListenAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		args               []string
		env                map[string]string
		wantGRPC, wantHTTP string
	}{
		{"dev mode", nil, nil, "127.0.0.1:7070", "127.0.0.1:8080"},
		{"dev mode, flags", []string{"-grpc-addr", ":9090", "-http-addr", "0.0.0.0:9091"}, nil, ":9090", "0.0.0.0:9091"},
		{"dev mode, env", nil, map[string]string{"LEDGER_GRPC_ADDR": ":9090", "LEDGER_HTTP_ADDR": "[::]:9091"}, ":9090", "[::]:9091"},
		{"dev mode, one flag", []string{"-http-addr", ":9091"}, nil, "127.0.0.1:7070", ":9091"},
		{"external postgres", []string{"-postgres-url", "postgres://db/ledger"}, nil, ":7070", ":8080"},
		{"external nats", nil, map[string]string{"LEDGER_NATS_URL": "nats://bus:4222"}, ":7070", ":8080"},
		{"external, env address", nil, map[string]string{"LEDGER_POSTGRES_URL": "postgres://db/ledger", "LEDGER_GRPC_ADDR": "10.0.0.1:7070"}, "10.0.0.1:7070", ":8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil || c.GRPCAddr != tc.wantGRPC || c.HTTPAddr != tc.wantHTTP {
				t.Errorf("ParseFlags(%q, %v): grpc %q http %q, %v; want grpc %q http %q",
					tc.args, tc.env, c.GRPCAddr, c.HTTPAddr, err, tc.wantGRPC, tc.wantHTTP)
			}
		})
	}
}

func TestParseFlagsNATSListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // "" and ok: in-process only
		ok   bool
	}{
		{nil, nil, "", true},
		{[]string{"-nats-listen", "127.0.0.1:4333"}, nil, "127.0.0.1:4333", true},
		{nil, map[string]string{"LEDGER_NATS_LISTEN": "localhost:4333"}, "localhost:4333", true},
		{[]string{"-nats-listen", "4333"}, nil, "", false},
		{[]string{"-nats-listen", "127.0.0.1:0"}, nil, "", false},
		{[]string{"-nats-listen", "127.0.0.1:4333", "-nats-url", "nats://bus:4222"}, nil, "", false},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if (err == nil) != tc.ok || tc.ok && c.NATSListen != tc.want {
			t.Errorf("ParseFlags(%q, %v): nats-listen %q, %v; want %q, ok %v", tc.args, tc.env, c.NATSListen, err, tc.want, tc.ok)
		}
	}
}

// TestParseFlagsAnchors: the anchor key comes from a file or, never as a
// flag, from the environment (not both); the interval is bounded; the
// public keys of keys rotated out from a flag or the environment.
func TestParseFlagsAnchors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		wantErr bool
		check   func(daemon.Config) bool
	}{
		{nil, nil, false, func(c daemon.Config) bool { return c.AnchorEvery == 10*time.Second && c.AnchorKeyFile == "" }},
		{[]string{"-anchor-key-file", "/k", "-anchor-every", "0"}, nil, false,
			func(c daemon.Config) bool { return c.AnchorKeyFile == "/k" && c.AnchorEvery == 0 }},
		{nil, map[string]string{"LEDGER_ANCHOR_KEY": "seed", "LEDGER_ANCHOR_DIR": "/a", "LEDGER_ANCHOR_EVERY": "1m"}, false,
			func(c daemon.Config) bool {
				return c.AnchorKey == "seed" && c.AnchorDir == "/a" && c.AnchorEvery == time.Minute
			}},
		{[]string{"-anchor-pubkey", "/old"}, nil, false, func(c daemon.Config) bool { return c.AnchorPubKey == "/old" }},
		{nil, map[string]string{"LEDGER_ANCHOR_PUBKEY": "/old"}, false, func(c daemon.Config) bool { return c.AnchorPubKey == "/old" }},
		{[]string{"-anchor-key-file", "/k"}, map[string]string{"LEDGER_ANCHOR_KEY": "seed"}, true, nil},
		{[]string{"-anchor-every", "-1s"}, nil, true, nil},
		{[]string{"-anchor-every", "25h"}, nil, true, nil},
		{nil, map[string]string{"LEDGER_ANCHOR_EVERY": "often"}, true, nil},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if (err != nil) != tc.wantErr || err == nil && !tc.check(c) {
			t.Errorf("%v %v: %+v, %v", tc.args, tc.env, c, err)
		}
	}
}

// TestParseFlagsNATSAuth: an external NATS's credentials come from flags,
// the password from the environment; half a pair, two kinds of credentials,
// or credentials without -nats-url are refused before anything starts.
func TestParseFlagsNATSAuth(t *testing.T) {
	t.Parallel()
	url := []string{"-nats-url", "nats://nats.example:4222"}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr bool
		want    daemon.NATSAuth
	}{
		{"none", url, nil, false, daemon.NATSAuth{}},
		{"user, password from env", append([]string{"-nats-user", "ledgerd"}, url...), map[string]string{"LEDGER_NATS_PASSWORD": "pw"},
			false, daemon.NATSAuth{User: "ledgerd", Password: "pw"}},
		{"user without password", append([]string{"-nats-user", "ledgerd"}, url...), nil, true, daemon.NATSAuth{}},
		{"creds and nkey", append([]string{"-nats-creds", "a.creds", "-nats-nkey-seed", "u.nk"}, url...), nil, true, daemon.NATSAuth{}},
		{"tls from env", url, map[string]string{"LEDGER_NATS_TLS_CA": "ca.pem", "LEDGER_NATS_TLS_CERT": "c.pem", "LEDGER_NATS_TLS_KEY": "k.pem"},
			false, daemon.NATSAuth{TLSCA: "ca.pem", TLSCert: "c.pem", TLSKey: "k.pem"}},
		{"tls cert alone", append([]string{"-nats-tls-cert", "c.pem"}, url...), nil, true, daemon.NATSAuth{}},
		{"credentials for the embedded NATS", []string{"-nats-nkey-seed", "u.nk"}, nil, true, daemon.NATSAuth{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if (err != nil) != tc.wantErr || err == nil && c.NATSAuth != tc.want {
				t.Errorf("ParseFlags(%q, %v): %+v, %v; want %+v (error %v)", tc.args, tc.env, c.NATSAuth, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestParseFlagsRoleURLs: the per-role PostgreSQL URLs come from flags or
// the environment (they hold passwords: never a flag default), and need
// -postgres-url, whose login is the writer's.
func TestParseFlagsRoleURLs(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LEDGER_POSTGRES_URL": "postgres://w@db/l", "LEDGER_POSTGRES_READ_URL": "postgres://r@db/l",
		"LEDGER_POSTGRES_KEYS_URL": "postgres://k@db/l"}
	c, err := daemon.ParseFlags([]string{"-postgres-projector-url", "postgres://p@db/l", "-postgres-keys-url", "postgres://k2@db/l"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.PostgresProjectorURL != "postgres://p@db/l" || c.PostgresReadURL != "postgres://r@db/l" ||
		c.PostgresKeysURL != "postgres://k2@db/l" {
		t.Errorf("role URLs from flags over env: %+v, %v", c, err)
	}
	_, err = daemon.ParseFlags([]string{"-postgres-read-url", "postgres://r@db/l"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "need -postgres-url") {
		t.Errorf("-postgres-read-url without -postgres-url: %v, want refused", err)
	}
}

// TestParseFlagsConsole: the console is served unless turned off, by flag
// or environment.
func TestParseFlagsConsole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{"default on", nil, nil, true, false},
		{"flag off", []string{"-console=false"}, nil, false, false},
		{"env off", nil, map[string]string{"LEDGER_CONSOLE": "off"}, false, false},
		{"flag over env", []string{"-console"}, map[string]string{"LEDGER_CONSOLE": "off"}, true, false},
		{"env bogus", nil, map[string]string{"LEDGER_CONSOLE": "maybe"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if (err != nil) != tc.wantErr || (err == nil && c.Console != tc.want) {
				t.Errorf("ParseFlags(%q, %v): console %v, %v; want %v (error %v)", tc.args, tc.env, c.Console, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestParseFlagsStreamPlainFrames: compressed frames unless the flag or the
// environment asks for plain ones.
func TestParseFlagsStreamPlainFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"-stream-plain-frames"}, nil, true},
		{nil, map[string]string{"LEDGER_STREAM_PLAIN_FRAMES": "true"}, true},
		{[]string{"-stream-plain-frames=false"}, map[string]string{"LEDGER_STREAM_PLAIN_FRAMES": "true"}, false},
	} {
		c, err := daemon.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil || c.StreamPlainFrames != tc.want {
			t.Errorf("ParseFlags(%q, %v): StreamPlainFrames %v, %v; want %v", tc.args, tc.env, c.StreamPlainFrames, err, tc.want)
		}
	}
}
