package consumer_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestNewChecksTheConfig(t *testing.T) {
	t.Parallel()
	nc := natsConn(t, testenv.NATSURL(t))
	for _, tc := range []struct {
		name string
		cfg  consumer.Config
		want string // "" accepts
	}{
		{"defaults", consumer.Config{Ledger: "main", NATS: nc}, ""},
		{"batch at the limit", consumer.Config{Ledger: "main", NATS: nc, BatchMax: consumer.BatchMaxLimit}, ""},
		{"batch past the limit", consumer.Config{Ledger: "main", NATS: nc, BatchMax: consumer.BatchMaxLimit + 1}, "BatchMax 8193"},
		{"negative batch", consumer.Config{Ledger: "main", NATS: nc, BatchMax: -1}, "BatchMax -1"},
		{"bad ledger", consumer.Config{Ledger: "Main!", NATS: nc}, `ledger "Main!"`},
		{"no NATS", consumer.Config{Ledger: "main"}, "NATS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consumer.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v, want it accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestRunPostgresChecksTheName(t *testing.T) {
	t.Parallel()
	s := newService(t)
	c := newConsumer(t, consumer.Config{Ledger: "main", NATS: natsConn(t, testenv.NATSURL(t))})
	for _, name := range []string{"", strings.Repeat("n", 129)} {
		err := c.RunPostgres(ledgerdtest.Ctx(t), s.pool, name, record)
		if err == nil || !strings.Contains(err.Error(), "want 1..128 bytes") {
			t.Errorf("RunPostgres named %d bytes: %v, want refused", len(name), err)
		}
	}
}

func TestNATSOptionsRefuseWhatCannotWork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    consumer.NATSOptions
		want string
	}{
		{"no URL", consumer.NATSOptions{}, "URL"},
		{"two kinds of credentials", consumer.NATSOptions{URL: "nats://x", CredsFile: "a.creds", User: "u"}, "give one"},
		{"half a TLS pair", consumer.NATSOptions{URL: "nats://x", TLSCert: "c.pem"}, "TLSCert and TLSKey"},
		{"a CA file missing", consumer.NATSOptions{URL: "nats://x", TLSCA: "/nonexistent.pem"}, "TLS CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.Connect()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connect: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestCheckpointNext(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sealed := func(pos uint64, typ string, version int, payload string, prev eventstore.Hash) eventstore.Record {
		r := eventstore.Record{Ledger: "main", Position: pos, Type: typ, SchemaVersion: version, RecordedAt: at,
			CommandID: "c", Payload: []byte(payload)}
		r.Seal(prev)
		return r
	}
	first := sealed(1, domain.TypeAssetDefined, 1, `{"code":"USD","scale":2}`, eventstore.Hash{})
	start, after := consumer.Checkpoint{}, consumer.Checkpoint{Position: 1, Hash: first.Hash}
	for _, tc := range []struct {
		name    string
		from    consumer.Checkpoint
		rec     eventstore.Record
		chain   bool // a ChainError
		decoded bool // Data set
		err     bool // another error
	}{
		{"the first event", start, first, false, true, false},
		{"a repeat", after, first, true, false, false},
		{"a gap", after, sealed(3, domain.TypeAssetDefined, 1, `{"code":"EUR","scale":2}`, first.Hash), true, false, false},
		{"another prev_hash", after, sealed(2, domain.TypeAssetDefined, 1, `{"code":"EUR","scale":2}`, eventstore.Hash{9}), true, false, false},
		{"an unknown type: verified, handed over undecoded", after, sealed(2, "SomethingNew", 1, `{"x":1}`, first.Hash), false, false, false},
		{"a newer schema version", after, sealed(2, domain.TypeAssetDefined, 2, `{"code":"EUR"}`, first.Hash), false, false, false},
		{"a known type that does not decode", after, sealed(2, domain.TypeAssetDefined, 1, `{"code":7}`, first.Hash), false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, next, err := tc.from.Next(tc.rec)
			var ce *consumer.ChainError
			switch {
			case tc.chain:
				if !errors.As(err, &ce) || ce.Position != tc.rec.Position || next != tc.from {
					t.Fatalf("Next: %v, checkpoint %d, want a ChainError at %d and the checkpoint unmoved", err, next.Position, tc.rec.Position)
				}
			case tc.err:
				if err == nil || errors.Is(err, consumer.ErrChainBroken) || next != tc.from {
					t.Fatalf("Next: %v, want a decoding error and the checkpoint unmoved", err)
				}
			default:
				if err != nil || next != ev.Checkpoint() || next.Position != tc.rec.Position || (ev.Data != nil) != tc.decoded {
					t.Fatalf("Next: %v, data %v, checkpoint %d, want %d with data decoded %v", err, ev.Data, next.Position, tc.rec.Position, tc.decoded)
				}
			}
		})
	}
}
