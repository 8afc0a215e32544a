package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/client/consumer"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/ledgerdtest"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestForgedEventSealedOnHeadIsHandedToHandler: anyone who can publish on
// ledger.<ledger>.events knows the head's hash (it is on the stream) and can
// seal a forged event on it. With Config.Audit, the consumer confirms each
// batch's last event against the log: the forged event, past the log's
// head, stops the run with ErrNotInLog and is never handed over; and once
// the log holds another event there, a consumer that reads the forged one
// first stops the same way. The consumer used to check only that the event
// chains to what it applied, and handed it over.
func TestForgedEventSealedOnHeadIsHandedToHandler(t *testing.T) {
	l := ledgerdtest.Start(t)
	nc := natsConn(t, l.NATSURL)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	ledger := testenv.Name(t)
	l.Setup(t, ledger, 2)
	head := l.Transfers(t, ledger, ledgerdtest.Transfer("t1", "bank", ledgerdtest.UserAccount(1), "10.00"))
	// Audit set: the consumer could read the log, and still does not check it.
	c := newConsumer(t, consumer.Config{Ledger: ledger, NATS: nc, Audit: l.Audit})
	var applied consumer.Checkpoint
	seen := make(chan consumer.Event, 64)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, consumer.Checkpoint{}, func(_ context.Context, ev consumer.Event) error {
			applied = ev.Checkpoint()
			seen <- ev
			return nil
		})
	}()
	for ev := range seen {
		if ev.Position == head {
			break
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	forged := eventstore.Record{Ledger: ledger, Position: head + 1, Type: domain.TypeTransferCommitted,
		SchemaVersion: domain.SchemaVersion, RecordedAt: now, CommandID: "forged",
		Payload: domain.AppendEvent(nil, domain.TransferCommitted{ID: "forged", EffectiveAt: now,
			Postings: []domain.Posting{{Debit: "bank", Credit: ledgerdtest.UserAccount(1), Asset: "USD",
				Amount: domain.Amount{Units: domain.UnitsFromInt64(100_000_000), Scale: 2}}}})}
	forged.Seal(applied.Hash) // the head's hash: public, on the stream
	_, err = js.PublishMsg(ledgerdtest.Ctx(t), natsbus.NewFrame(natsbus.Subject(ledger), []eventstore.Record{forged}))
	testenv.NoError(t, err)
	select {
	case ev := <-seen:
		t.Fatalf("the handler was handed position %d (%s %s), an event the log does not hold (log head %d)",
			ev.Position, ev.Type, ev.CommandID, head)
	case err := <-done:
		if !errors.Is(err, consumer.ErrNotInLog) {
			t.Fatalf("run with a forged event past the log's head: %v, want ErrNotInLog", err)
		}
	case <-time.After(wait):
		t.Fatalf("the run neither refused the forged event nor handed it over in %s", wait)
	}

	t.Log("the log moves on to head+1: the forged event, first on the stream there, is another hash than the log's")
	next := l.Transfers(t, ledger, ledgerdtest.Transfer("t2", "bank", ledgerdtest.UserAccount(1), "1.00"))
	if next != head+1 {
		t.Fatalf("the next head: %d, want %d", next, head+1)
	}
	err = c.Run(ctx, applied, func(_ context.Context, ev consumer.Event) error {
		return fmt.Errorf("handed position %d (%s %s), read after the forged event", ev.Position, ev.Type, ev.CommandID)
	})
	if !errors.Is(err, consumer.ErrNotInLog) || !strings.Contains(err.Error(), "the log's") {
		t.Fatalf("run from the head over the forged event: %v, want ErrNotInLog (another hash)", err)
	}
}
