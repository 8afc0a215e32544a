package webhooks_test

import (
	"context"
	"errors"
	"fmt"
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
	e := newEnv(t, ctx)
	pool, store := e.pool, e.store
	ledger := testenv.Name(t)
	sub, _, err := store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/hook"})
	testenv.NoError(t, err)
	d := e.dispatcher(webhooks.Options{Owner: "a", Poll: time.Hour, SubscriptionsMax: 1})
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

// env is a test's database and JetStream, and the stores over them.
type env struct {
	pool  *pgxpool.Pool
	js    jetstream.JetStream
	store *webhooks.Store
	log   *eventstore.Store
}

func newEnv(t *testing.T, ctx context.Context) *env {
	t.Helper()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return &env{pool: pool, js: js, store: webhooks.NewStore(pool), log: eventstore.New(pool)}
}

func (e *env) dispatcher(opts webhooks.Options) *webhooks.Dispatcher {
	return webhooks.NewDispatcher(e.store, e.log, func(ledger string) webhooks.Source {
		return natsbus.NewSource(ledger, e.js, e.log, natsbus.StreamOptions{}, nil)
	}, opts)
}

// run runs d until the test ends, and waits for it to stop before the
// pool closes.
func run(t *testing.T, ctx context.Context, d *webhooks.Dispatcher) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// appendEvents appends one event to ledger for each payload, from
// position 1. Their type is one this build does not decode: a
// subscription delivers it as it is.
func appendEvents(t *testing.T, ctx context.Context, log *eventstore.Store, ledger string, payloads ...string) {
	t.Helper()
	recs := make([]eventstore.Record, len(payloads))
	var prev eventstore.Hash
	for i, p := range payloads {
		recs[i] = eventstore.Record{Ledger: ledger, Position: uint64(i + 1), Type: "Alert", SchemaVersion: 1,
			RecordedAt: time.Now().UTC().Truncate(time.Microsecond), CommandID: fmt.Sprintf("c%d", i+1), Payload: []byte(p)}
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	testenv.NoError(t, log.Append(ctx, ledger, 0, eventstore.Hash{}, recs))
}

// A dispatcher at its limit, with a subscription waiting past it, renews
// the leases of those it runs: they stay its own, their workers
// uninterrupted. Its own used to be ranked after the free ones under the
// claim's limit (NULL owners first), so that it took the waiting one in
// place of one of its own, whose lease lapsed and whose worker stopped.
func TestClaimAtTheLimitRenewsItsOwnLeases(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	var ids []string
	for i := range 3 {
		sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/hook"})
		testenv.NoError(t, err)
		ids = append(ids, sub.ID)
		// Distinct created_at: the first two are claimed first.
		_, err = e.pool.Exec(ctx, `UPDATE webhook_subscriptions SET created_at = now() + $2 * interval '1 second' WHERE id = $1`, sub.ID, i)
		testenv.NoError(t, err)
	}
	const lease = 2 * time.Second
	d := e.dispatcher(webhooks.Options{Owner: "a", Poll: time.Hour, Lease: lease, SubscriptionsMax: 2})
	t.Cleanup(cancel) // ends the workers, before the pool closes

	d.Poll(ctx)
	first := map[string]any{}
	for _, id := range ids[:2] {
		w, ended := d.Worker(id)
		if w == nil || ended {
			t.Fatalf("%s: worker %v, ended %v after the first claim: want one running", id, w, ended)
		}
		first[id] = w
	}
	for end := time.Now().Add(5 * lease / 2); time.Now().Before(end); {
		time.Sleep(lease / 10)
		d.Poll(ctx)
		for _, id := range ids[:2] {
			if w, ended := d.Worker(id); w != first[id] || ended {
				t.Fatalf("%s, held and renewed every %s: worker %v (was %v), ended %v: want the same, running",
					id, lease/10, w, first[id], ended)
			}
		}
		if w, _ := d.Worker(ids[2]); w != nil {
			t.Fatalf("the third, past the limit of two: worker %v, want none", w)
		}
	}
}

// insertDeliveries adds n delivery log rows of a subscription, positions
// from first on, last changed age ago.
func insertDeliveries(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sub string, first, n int, age time.Duration, replay bool) {
	t.Helper()
	status := "delivered"
	if replay {
		status = "pending"
	}
	_, err := pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, position, ledger, event_type, status, replay, updated_at)
		SELECT $1, g, 'l', 'TransferCommitted', $5, $6, now() - $4::interval FROM generate_series($2::bigint, $2::bigint + $3 - 1) g`,
		sub, first, n, age, status, replay)
	testenv.NoError(t, err)
}

func countDeliveries(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sub string) int {
	t.Helper()
	var n int
	testenv.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1`, sub).Scan(&n))
	return n
}

// A dispatcher's trim removes every row past the retention, however many
// batches that takes: 25,000 rows, two and a half batches, are gone after
// the first trim. It used to remove one batch every 10 minutes, less than
// one subscription to a busy ledger adds. Rows within the retention, and
// dead letters queued for a replay of a subscription that exists, stay.
func TestTrimRemovesEveryRowPastTheRetention(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	const old, recent = "wh_00000000000000a1", "wh_00000000000000a2"
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: testenv.Name(t), URL: "http://127.0.0.1:9/hook"})
	testenv.NoError(t, err)
	queued := sub.ID
	// Held by another ledgerd: this test's dispatcher does not deliver its
	// queued dead letters.
	_, err = e.pool.Exec(ctx, `UPDATE webhook_subscriptions SET lease_owner = 'b', lease_until = now() + interval '1 hour'
		WHERE id = $1`, queued)
	testenv.NoError(t, err)
	insertDeliveries(t, ctx, e.pool, old, 1, 25_000, 8*24*time.Hour, false)
	insertDeliveries(t, ctx, e.pool, recent, 1, 10, 6*24*time.Hour, false)
	insertDeliveries(t, ctx, e.pool, queued, 1, 10, 8*24*time.Hour, true)
	run(t, ctx, e.dispatcher(webhooks.Options{Owner: "a", Poll: time.Hour}))
	// Well within the minute before the next trim.
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := countDeliveries(t, ctx, e.pool, old); n > 0 {
			return fmt.Errorf("%d rows past the retention left", n)
		}
		return nil
	})
	if n := countDeliveries(t, ctx, e.pool, recent); n != 10 {
		t.Errorf("rows within the retention: %d left, want 10", n)
	}
	if n := countDeliveries(t, ctx, e.pool, queued); n != 10 {
		t.Errorf("dead letters queued for a replay: %d left, want 10", n)
	}
}

// A trim stops after its last batch, the rest left to the next, and at the
// first batch that comes back short.
func TestTrimStopsAtItsBatchLimit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	const sub = "wh_00000000000000a1"
	insertDeliveries(t, ctx, e.pool, sub, 1, 5_000, 8*24*time.Hour, false)
	d := e.dispatcher(webhooks.Options{Owner: "a"})
	for _, c := range []struct {
		name string
		want int64
		left int
	}{
		{"three full batches", 3_000, 2_000},
		{"two, then a short one", 2_000, 0},
		{"nothing left", 0, 0},
	} {
		n, err := d.Trim(ctx, 1_000, 3)
		testenv.NoError(t, err)
		if left := countDeliveries(t, ctx, e.pool, sub); n != c.want || left != c.left {
			t.Errorf("%s: removed %d, %d left; want %d, %d left", c.name, n, left, c.want, c.left)
		}
	}
}

// A deleted subscription's dead letters queued by a replay (replay --dead
// on an endpoint still down, then the subscription deleted: the natural
// way out) expire after the retention like its other rows, as
// docs/webhooks.md says. The trim used to skip every row queued for a
// replay, and with no worker left to deliver them they stayed for ever.
func TestDeletedSubscriptionsQueuedReplaysExpire(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: "http://127.0.0.1:9/hook"})
	testenv.NoError(t, err)
	_, err = e.pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, position, ledger, event_type, status, attempts, updated_at)
		SELECT $1, g, $2, 'Alert', 'dead', 3, now() FROM generate_series(1, 5) g`, sub.ID, ledger)
	testenv.NoError(t, err)
	n, err := e.store.ReplayDead(ctx, ledger, sub.ID)
	testenv.NoError(t, err)
	if n != 5 {
		t.Fatalf("replay of the dead letters: %d, want 5", n)
	}
	testenv.NoError(t, e.store.Delete(ctx, ledger, sub.ID))
	// Eight days on.
	_, err = e.pool.Exec(ctx, `UPDATE webhook_deliveries SET updated_at = now() - interval '8 days' WHERE subscription_id = $1`, sub.ID)
	testenv.NoError(t, err)
	d := e.dispatcher(webhooks.Options{Owner: "a"})
	_, err = d.Trim(ctx, 1_000, 10)
	testenv.NoError(t, err)
	if left := countDeliveries(t, ctx, e.pool, sub.ID); left != 0 {
		t.Fatalf("a deleted subscription's rows, 8 days old, after a trim: %d left, want 0", left)
	}
}
