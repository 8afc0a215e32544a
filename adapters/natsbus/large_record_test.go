package natsbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// largePeriodClose is a period's close over AssetsMaxDefault assets, each
// line's sums of the most digits at ScaleMax, random (so that S2 shrinks it
// little): about 1.6 MB of JSON, more than NATS's default max_payload and
// the 1 MiB a frame was once held to.
func largePeriodClose() domain.PeriodClosed {
	rng := rand.New(rand.NewPCG(1, 2))
	sum := func() string {
		const digits = domain.DigitsMax + 7 // a sum over millions of accounts
		var b strings.Builder
		for i := range digits {
			if i == digits-domain.ScaleMax {
				b.WriteByte('.')
			}
			b.WriteByte(byte('1' + rng.IntN(9)))
		}
		return b.String()
	}
	e := domain.PeriodClosed{End: time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC), Accounts: 1 << 22,
		ClosingDigest: strings.Repeat("d", 64)}
	for i := range domain.AssetsMaxDefault {
		e.TrialBalance = append(e.TrialBalance, domain.PeriodAssetTotal{Asset: fmt.Sprintf("B%0*d", domain.AssetCodeLenMax-1, i),
			DebitsPosted: sum(), CreditsPosted: sum()})
	}
	return e
}

// TestLargestRecordReachesASource: a log holding, between small records, a
// period's close over the most assets (a record over 1 MiB) is published
// by the relay, compressed or plain, on the package's embedded server, and a
// source reads every record of it, in order, from the stream.
func TestLargestRecordReachesASource(t *testing.T) {
	t.Parallel()
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "compressed", true: "plain"}[plain], func(t *testing.T) {
			t.Parallel()
			store, ledger := openStore(t), testenv.Name(t)
			log := newTestLog(t, store, ledger)
			log.append(5)
			large := log.appendEvent(largePeriodClose(), "close-1")
			if len(large.Payload) <= 1<<20 {
				t.Fatalf("the period's close is %d bytes, want over 1 MiB", len(large.Payload))
			}
			log.append(5)
			js := jetStream(t)
			startRelayOpts(t, ledger, js, store, 0, natsbus.StreamOptions{PlainFrames: plain})
			waitStreamAt(t, js, ledger, log.head)
			checkStream(t, js, store, ledger)
			want := readLog(t, store, ledger)
			checkRecords(t, readRange(t, newSource(t, store, ledger), 1, log.head, 1000), want)
			checkRecords(t, readRange(t, newSource(t, store, ledger), large.Position, large.Position, 1),
				want[large.Position-1:large.Position])
		})
	}
}

// TestRelayOverMaxPayloadSaysSo: on a server whose max_payload is NATS's
// default (1 MiB), the relay warns at start, naming max_payload, publishes
// the records before a frame over it and stops there with an error naming
// max_payload (ErrMaxPayload), logged at ERROR, instead of a silent stall.
func TestRelayOverMaxPayloadSaysSo(t *testing.T) {
	t.Parallel()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), InProcess: true, MaxPayload: 1 << 20})
	testenv.NoError(t, err)
	t.Cleanup(e.Shutdown)
	nc, err := nats.Connect("", e.InProcessOption())
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)

	store, ledger := openStore(t), testenv.Name(t)
	log := newTestLog(t, store, ledger)
	log.append(5)
	before := log.head
	log.appendEvent(largePeriodClose(), "close-1")
	log.append(2)
	var out testenv.LockedBuffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := natsbus.NewRelay(ledger, js, store, natsbus.StreamOptions{PlainFrames: true}, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitStreamAt(t, js, ledger, before)
	testenv.Eventually(t, relayWaitMax, func() error {
		got := out.String()
		for _, want := range []string{
			"level=WARN msg=\"the NATS server's max_payload is below",
			fmt.Sprintf("max_payload=%d max_payload_min=%d", 1<<20, natsbus.MaxPayloadMin),
			"level=ERROR msg=\"relay stopped: a frame is over the NATS server's max_payload",
			natsbus.ErrMaxPayload.Error(),
			// Tried again: the same frame refused is not an ERROR again.
			"level=DEBUG msg=\"relay stopped: a frame is over the NATS server's max_payload",
		} {
			if !strings.Contains(got, want) {
				return fmt.Errorf("the relay's log does not say %q yet:\n%s", want, got)
			}
		}
		return nil
	})
	if n := strings.Count(out.String(), "level=ERROR msg=\"relay stopped"); n != 1 {
		t.Errorf("the refusal logged at ERROR %d times, want once", n)
	}
	if last, err := streamLast(t.Context(), js, ledger); err != nil || last != before {
		t.Fatalf("the stream ends at %d (%v), want %d: nothing past the frame refused", last, err, before)
	}
	t.Logf("relay's log:\n%s", out.String())
}
