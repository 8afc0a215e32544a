package webhooks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// A subscription whose row is locked when the dispatcher claims (its worker
// recording the circuit's state) is still this dispatcher's: its worker goes
// on. It used to be stopped and a second one started at the next claim,
// while the first was still ending: two workers of one subscription, each
// counting its own attempts of the same delivery.
func TestPollKeepsALockedSubscription(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	store, log := webhooks.NewStore(pool), eventstore.New(pool)
	ledger := testenv.Name(t)
	sub, _, err := store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/hook"})
	testenv.NoError(t, err)
	d := webhooks.NewDispatcher(store, log, func(ledger string) webhooks.Source {
		return natsbus.NewSource(ledger, js, log, natsbus.StreamOptions{}, nil)
	}, webhooks.Options{Owner: "a", Poll: time.Hour, SubscriptionsMax: 1})
	t.Cleanup(cancel) // ends the workers, before the pool closes

	d.Poll(ctx)
	first, ended := d.Worker(sub.ID)
	if first == nil || ended {
		t.Fatalf("after the first claim: worker %v, ended %v", first, ended)
	}
	// A second subscription, past the dispatcher's limit of one.
	other, _, err := store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/other"})
	testenv.NoError(t, err)

	tx, err := pool.Begin(ctx)
	testenv.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM webhook_subscriptions WHERE id = $1 FOR UPDATE`, sub.ID)
	testenv.NoError(t, err)
	d.Poll(ctx)
	time.Sleep(100 * time.Millisecond) // a stopped worker ends at once
	if w, ended := d.Worker(sub.ID); w != first || ended {
		t.Fatalf("a claim while the row is locked: worker %v (was %v), ended %v: want the same, running", w, first, ended)
	}
	// The claim took the other in the locked one's place: it is given back.
	var owner *string
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT lease_owner FROM webhook_subscriptions WHERE id = $1`, other.ID).Scan(&owner))
	if w, _ := d.Worker(other.ID); w != nil || owner != nil {
		t.Fatalf("over the limit of one: the other has worker %v, lease %v; want none", w, owner)
	}
	testenv.NoError(t, tx.Rollback(ctx))

	t.Log("taken by another dispatcher: stopped")
	_, err = pool.Exec(ctx, `UPDATE webhook_subscriptions SET lease_owner = 'b' WHERE id = $1`, sub.ID)
	testenv.NoError(t, err)
	d.Poll(ctx)
	testenv.Eventually(t, 10*time.Second, func() error {
		if w, ended := d.Worker(sub.ID); w == first && !ended {
			return errors.New("still running")
		}
		return nil
	})
}
